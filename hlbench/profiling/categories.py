"""Operator names → a small set of categories, so PyTorch and TensorFlow compare by kind of work.

Framework-free: ordered regex rules over PyTorch aten/profiler names (`aten::mm`,
`Optimizer.step#…`, `autograd::engine::…: MmBackward0`) and TensorFlow op types (`MatMul`,
`_FusedMatMul`, `BatchMatMulV2`). The first matching rule wins; an operator no rule matches is
"other". Casts are their own category.
"""

from __future__ import annotations

import re

CATEGORIES = (
    "matmul",
    "attention",
    "normalization",
    "elementwise",
    "optimizer",
    "cast",
    "data_movement",
    "communication",
    "other",
)

# (category, pattern) in priority order; patterns are searched case-insensitively in the name.
_RULES: list[tuple[str, str]] = [
    (
        "communication",
        r"nccl|all_?reduce|all_?gather|reduce_?scatter|c10d|broadcast_?coalesced|collective",
    ),
    (
        "optimizer",
        r"optimizer|adamw?|_fused_adam|resourceapply|applyadam|lerp|addcdiv|addcmul|_foreach_|"
        r"clip_grad|global_?norm|assign(add|sub)?variableop|assign\b",
    ),
    ("attention", r"scaled_dot_product|_efficient_attention|flash_attention|_sdpa|attention"),
    ("cast", r"aten::_?to_copy|aten::to\b|aten::type_as|\bcast\b|^cast$|castop"),
    (
        "matmul",
        r"aten::(mm|bmm|addmm|matmul|linear|baddbmm|addbmm|_?mkldnn_.*linear|einsum)\b|matmul|gemm|"
        r"einsum|conv|lstm|\bmm\b|^mm",
    ),
    (
        "normalization",
        r"layer_?norm|native_layer_norm|batch_?norm|fusedbatchnorm|rsqrt|moments|"
        r"squareddifference|\bmean\b|^mean$",
    ),
    (
        "data_movement",
        r"copy|contiguous|clone|transpose|permute|reshape|view|expand|slice|select|index|gather|"
        r"scatter|concat|cat\b|split|stack|pack|unpack|pad|embedding|tile|squeeze|as_strided|"
        r"strided|identity|fill|zeros|ones|empty|resize|memcpy|memset|send|recv|_arg|_retval|"
        r"const|range|shape|broadcastto|broadcast_to|flatten|unsqueeze|narrow|t\b|^t$|"
        r"readvariableop|varhandle|_to_device|where|onehot|one_hot",
    ),
    (
        "elementwise",
        r"add|sub|mul|div|neg|exp|log|pow|sqrt|tanh|gelu|relu|sigmoid|softmax|silu|erf|"
        r"dropout|maximum|minimum|abs|sum|reduce|max|min|argmax|norm|square|fill|sign|"
        r"clamp|where|equal|not_?equal|greater|less|logical|select|mask|cross_?entropy|nll|"
        r"backward|xent|bias|isfinite|isinf|isnan|all\b|any\b|prod|cumsum|sin|cos|rsub|"
        r"floor|ceil|round|_local_scalar|item|add_n|addn",
    ),
]
_COMPILED = [(cat, re.compile(pat, re.IGNORECASE)) for cat, pat in _RULES]


def categorize(name: str) -> str:
    """The category of one operator name (PyTorch or TensorFlow), "other" when no rule matches."""
    for category, pattern in _COMPILED:
        if pattern.search(name):
            return category
    return "other"


def category_seconds(op_self_s: dict[str, float]) -> dict[str, float]:
    """Self seconds per category, every category present (0.0 when none of its ops ran)."""
    out = dict.fromkeys(CATEGORIES, 0.0)
    for name, seconds in op_self_s.items():
        out[categorize(name)] += seconds
    return out


def category_shares(op_self_s: dict[str, float]) -> dict[str, float]:
    """Each category's share of the total self time (the "other" share is what the rules miss)."""
    seconds = category_seconds(op_self_s)
    total = sum(seconds.values())
    return {c: s / total for c, s in seconds.items()} if total > 0 else {}
