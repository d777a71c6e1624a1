"""Suite files: strict schema (hlbench.suite.schema), validation before anything runs
(hlbench.suite.load) and expansion into cells (hlbench.suite.expand)."""

from __future__ import annotations

from hlbench.suite.load import Suite, load_suite, suite_from_mapping
from hlbench.suite.schema import (
    DEFAULT_SEQ_LEN,
    Augmentation,
    Axes,
    BytesDataConfig,
    Launcher,
    MarkovDataConfig,
    Measurement,
    Optimizer,
    SuiteConfig,
    Telemetry,
    WorkloadConfig,
)

__all__ = [
    "DEFAULT_SEQ_LEN",
    "Augmentation",
    "Axes",
    "BytesDataConfig",
    "Launcher",
    "MarkovDataConfig",
    "Measurement",
    "Optimizer",
    "Suite",
    "SuiteConfig",
    "Telemetry",
    "WorkloadConfig",
    "load_suite",
    "suite_from_mapping",
]
