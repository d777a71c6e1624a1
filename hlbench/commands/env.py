"""`hlbench env`: what this machine offers, as text for a person or JSON for a tool."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

GIB = 2**30


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "env",
        help="print what this machine offers: host, GPUs via NVML, frameworks, the measured CPU "
        "GEMM rate",
        description="Print the host, the installed frameworks and packages, the GPUs NVML sees "
        "(with their datasheet bf16 peak) and the CPU's measured fp32 GEMM rate. Nothing is "
        "trained and no framework is imported.",
    )
    p.add_argument(
        "--no-calibrate", action="store_true", help="skip the CPU GEMM measurement (~1 s)"
    )
    p.add_argument(
        "--format",
        choices=("auto", "text", "json"),
        default="auto",
        help="text (a few lines) or json (every field); default auto: text on a terminal, json "
        "when piped or redirected (so `hlbench env > env.json` keeps working)",
    )
    p.add_argument(
        "--json", action="store_const", const="json", dest="format", help="--format json"
    )
    p.set_defaults(func=cmd_env)


def cmd_env(args: argparse.Namespace) -> int:
    from hlbench.backends import registry
    from hlbench.env import host_environment, machine_report

    frameworks = {name: spec.framework_installed() for name, spec in registry().items()}
    report = {
        "host": host_environment(),
        "backends_installed": frameworks,
        **machine_report(not args.no_calibrate),
    }
    fmt = args.format
    if fmt == "auto":
        fmt = "text" if sys.stdout.isatty() else "json"
    print(json.dumps(report, indent=2, ensure_ascii=False) if fmt == "json" else render(report))
    return 0


def render(report: dict[str, Any]) -> str:
    """The report in a few aligned lines; the JSON form has every field."""
    host, packages = report["host"], report.get("packages") or {}
    git = host.get("hlbench_git") or {}
    commit = (
        f", git {git['commit'][:8]}{' (dirty)' if git.get('dirty') else ''}"
        if git.get("commit")
        else ""
    )
    cores = f"{host.get('cpu_logical_cores')} cores"
    if host.get("cpu_affinity_cores") not in (None, host.get("cpu_logical_cores")):
        cores += f" ({host['cpu_affinity_cores']} usable)"
    memory = host.get("memory_total_bytes")
    rows = [
        ("host", f"{host.get('hostname')}: {host.get('os')} {host.get('machine')}"),
        (
            "cpu",
            f"{host.get('cpu_model') or 'unknown'}, {cores}"
            + (f", {memory / GIB:.1f} GiB" if memory else ""),
        ),
        ("python", f"{host.get('python')}, hlbench {host.get('hlbench_version')}{commit}"),
        ("backends", _backends(report["backends_installed"], packages)),
        ("packages", ", ".join(f"{k} {v}" for k, v in packages.items() if v) or "none"),
        *_gpus(report.get("nvml") or {}),
    ]
    if "cpu_gemm_fp32_flops" in report:
        flops = report["cpu_gemm_fp32_flops"]
        rate = f"{flops / 1e9:,.1f} GFLOP/s" if flops else "unavailable"
        rows.append(("cpu gemm", f"{rate} fp32 ({report.get('cpu_gemm_source')})"))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def _backends(installed: dict[str, bool], packages: dict[str, str | None]) -> str:
    from hlbench.backends import get_spec

    parts = []
    for name, ok in installed.items():
        framework = get_spec(name).framework
        # the package that provides the framework here: tensorflow or tensorflow-cpu
        found = next((p for p in (framework, f"{framework}-cpu") if packages.get(p)), None)
        if not ok:
            parts.append(f"{name}: missing {framework}")
        else:
            parts.append(f"{name}: ready" + (f" ({found} {packages[found]})" if found else ""))
    return "; ".join(parts)


def _gpus(nvml: dict[str, Any]) -> list[tuple[str, str]]:
    if not nvml.get("available"):
        reason = str(nvml.get("reason") or "unavailable").removeprefix("NVML unavailable: ")
        return [("gpus", f"none seen (NVML: {reason})")]
    gpus = nvml.get("gpus") or []
    if not gpus:
        return [("gpus", f"none (driver {nvml.get('driver_version')})")]
    rows = []
    for gpu in gpus:
        memory = gpu.get("memory_total_bytes")
        peak = gpu.get("peak_bf16_dense_flops")
        text = f"{gpu.get('index')}: {gpu.get('name')}" + (
            f", {memory / GIB:.0f} GiB" if memory else ""
        )
        text += f", bf16 peak {peak / 1e12:,.0f} TFLOP/s" if peak else ", bf16 peak unknown"
        rows.append(("gpus" if not rows else "", text))
    rows.append(("driver", f"{nvml.get('driver_version')} (NVML {nvml.get('nvml_version')})"))
    return rows
