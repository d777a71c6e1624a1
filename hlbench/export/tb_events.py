"""A TensorBoard event file written with TensorBoard's own record writer and protos only.

`tensorboard.summary.writer.record_writer` and `tensorboard.compat.proto` need neither PyTorch nor
TensorFlow. The usual writers do: tensorboardX imports PyTorch wherever it is installed,
`torch.utils.tensorboard` is PyTorch, and TensorBoard's `EventFileWriter` opens files through
`tensorboard.compat.tf`, which loads TensorFlow when it is installed. The exporter runs in the
parent process, which never loads a framework, so it writes the records itself.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

FILE_VERSION = "brain.Event:2"  # the first event of every event file, as TensorBoard expects


class EventFile:
    """One new event file in a directory; `close()` (or `with`) flushes it."""

    def __init__(self, directory: Path) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = event_pb2.Event, summary_pb2
        # TensorBoard reads every file whose name holds "tfevents"; the host and pid keep two
        # writers of one directory apart
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self._records = RecordWriter(open(directory / name, "wb"))  # noqa: SIM115 (closed in close)
        self._write(self._event(wall_time=time.time(), file_version=FILE_VERSION))

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._records.flush()
        self._records.close()

    def _write(self, event: Any) -> None:
        self._records.write(event.SerializeToString())

    def summary(self, summary: Any, step: int, wall_time_s: float) -> None:
        """A Summary proto as the event of a step."""
        self._write(self._event(wall_time=wall_time_s, step=step, summary=summary))

    def scalar(self, tag: str, value: float, step: int, wall_time_s: float) -> None:
        value_pb = self._summary.Summary.Value(tag=tag, simple_value=float(value))
        self.summary(self._summary.Summary(value=[value_pb]), step, wall_time_s)

    def text(self, tag: str, text: str, step: int, wall_time_s: float) -> None:
        """Markdown for TensorBoard's text dashboard (a string tensor with the text plugin's
        metadata)."""
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorboard.plugins.text.metadata import create_summary_metadata

        tensor = tensor_pb2.TensorProto(
            dtype=types_pb2.DT_STRING,
            string_val=[text.encode()],
            tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        )
        metadata = create_summary_metadata(display_name=tag, description="")
        value_pb = self._summary.Summary.Value(tag=tag, metadata=metadata, tensor=tensor)
        self.summary(self._summary.Summary(value=[value_pb]), step, wall_time_s)

    def hparams(self, values: dict[str, Any], trial_id: str, start_s: float) -> None:
        """One session of the HParams dashboard: the cell's axes as its hyperparameters."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        self.summary(hparams_pb(values, trial_id=trial_id, start_time_secs=start_s), 0, start_s)
