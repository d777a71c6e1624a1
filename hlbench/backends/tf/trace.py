"""TensorFlow: tf.profiler around profiled steps → the XSpace trace (`.xplane.pb`, what
TensorBoard's profile plugin opens), and the top operators read from it without TensorBoard.

What can be read without a GUI: the xplane protobuf parses with TensorFlow's own bindings
(tensorflow.tsl.profiler.protobuf.xplane_pb2). On the host plane, the executor's compute threads
(`tf_Compute/…` lines) carry one event per executed op named `node_name:OpType`; self time is its
duration minus the op events nested in it. What cannot (here): per-op GPU kernel times — on a GPU
the device planes hold kernel events, which hlbench does not attribute back to ops (TensorBoard's
op_profile does); XLA-compiled clusters appear as one op (their fused HLO is not split); no Chrome
trace JSON is written (TensorBoard's trace viewer converts the xplane itself). Imported by the TF
backend alone.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

TOP_OPS = 15
TRACED_STEPS = 2
_OP_EVENT = re.compile(
    r"^(?P<node>[^:]+):(?P<type>[A-Za-z0-9_]+)$"
)  # `node:OpType`, never `Class::method`


def trace_steps(trainer: Any, batch: Any, out_dir: Path) -> dict[str, Any]:
    import tensorflow as tf

    out_dir.mkdir(parents=True, exist_ok=True)
    trainer.sync()
    tf.profiler.experimental.start(str(out_dir))
    try:
        for _ in range(TRACED_STEPS):
            loss = trainer.train_step(batch)
        float(loss)  # forces completion of the traced steps before the profiler stops
        trainer.sync()
    finally:
        tf.profiler.experimental.stop()
    files = sorted(str(p) for p in out_dir.rglob("*.xplane.pb"))
    notes = (
        f"tf.profiler over {TRACED_STEPS} steps; host-side op times from the xplane's tf_Compute "
        "threads (self CPU time per step); GPU kernel times per op and XLA-fused internals are "
        "not extracted"
    )
    op_self_s: dict[str, float] = {}
    try:
        op_self_s = (
            {k: v / TRACED_STEPS for k, v in xplane_op_self_s(Path(files[-1])).items()}
            if files
            else {}
        )
    except ImportError as exc:  # a TensorFlow build without the bindings: the trace files alone
        notes += f"; op times not read: {exc}"
    ranked = sorted(op_self_s.items(), key=lambda kv: kv[1], reverse=True)[:TOP_OPS]
    return {
        "trace_path": files[-1] if files else None,
        "trace_files": files,
        "top_ops": {
            "by_self_cpu": [{"name": n, "self_s": s} for n, s in ranked],
            "by_self_device": [],
        },
        "op_self_s": op_self_s,
        "time_basis": "self CPU time per step (host compute threads)",
        "notes": notes,
    }


def xplane_op_self_s(path: Path) -> dict[str, float]:
    """Self seconds per TensorFlow op type over the host plane's compute threads."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    out: dict[str, float] = defaultdict(float)
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        names = {i: m.name for i, m in plane.event_metadata.items()}
        for line in plane.lines:
            ops = [
                (e.offset_ps, e.offset_ps + e.duration_ps, m.group("type"))
                for e in line.events
                if (m := _OP_EVENT.match(names.get(e.metadata_id, "")))
            ]
            ops.sort(key=lambda op: (op[0], -op[1]))
            stack: list[list[Any]] = []  # [end_ps, type, nested_ps, duration_ps]

            def close(frame: list[Any]) -> None:
                out[frame[1]] += max(frame[3] - frame[2], 0) / 1e12

            for start, end, op_type in ops:
                while stack and stack[-1][0] <= start:
                    close(stack.pop())
                if stack:
                    stack[-1][2] += end - start  # a nested op: not its parent's self time
                stack.append([end, op_type, 0, end - start])
            while stack:
                close(stack.pop())
    return dict(out)
