"""Whether an exception is an out-of-memory: the one table of the allocator messages PyTorch,
TensorFlow (and XLA) and NumPy emit on CPUs and GPUs. Framework-free, so every backend and the
worker judge a failure by the same table; a backend adds only its framework's exception classes.
"""

from __future__ import annotations

import re

# Exception class names (anywhere in the class's MRO) that mean the allocator gave up.
OOM_TYPES = frozenset(
    {
        "MemoryError",  # Python, NumPy's _ArrayMemoryError
        "OutOfMemoryError",  # torch.cuda.OutOfMemoryError (torch.OutOfMemoryError in 2.5+)
        "ResourceExhaustedError",  # tf.errors.ResourceExhaustedError
    }
)

# Message fragments, matched case-insensitively anywhere in the message (or a chained cause's).
OOM_PATTERNS: tuple[str, ...] = (
    "out of memory",  # "CUDA out of memory", "CUDA error: out of memory", "MPS backend out of
    # memory", TF's BFC "Allocator (GPU_0_bfc) ran out of memory", XLA's "Out of memory while
    # trying to allocate"
    "can't allocate memory",  # torch's "DefaultCPUAllocator: can't allocate memory"
    "cannot allocate memory",  # ENOMEM's strerror ("Error code 12 (Cannot allocate memory)")
    "oom when allocating",  # TF's "OOM when allocating tensor with shape[...]"
    "resourceexhaustederror",
    "resource_exhausted",  # XLA / gRPC status code
    "failed to allocate",  # TF's "failed to allocate memory", cudaMalloc wrappers
    "unable to allocate",  # NumPy's "Unable to allocate 3.00 GiB for an array"
    "std::bad_alloc",
    "cublas_status_alloc_failed",
    "cudnn_status_alloc_failed",
    "cudaerrormemoryallocation",
    "cuda_error_out_of_memory",
    "dst tensor is not initialized",  # TF's InternalError for a GPU copy with no memory left
)

_PATTERN = re.compile("|".join(re.escape(p) for p in OOM_PATTERNS), re.IGNORECASE)
_MAX_CHAIN = 8  # how far along __cause__ / __context__ to look


def is_oom_message(message: str) -> bool:
    """Whether `message` is one of the table's allocator messages."""
    return _PATTERN.search(message) is not None


def is_oom(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is an out-of-memory, by its class or by
    its message."""
    seen: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if seen is None:
            return False
        if any(cls.__name__ in OOM_TYPES for cls in type(seen).__mro__):
            return True
        if is_oom_message(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
