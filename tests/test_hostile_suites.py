"""Hostile suite files: each is refused with exit 2 and one short line on stderr, never a traceback,
never a run, never a file under results/ (the CLI cases run under an address-space cap)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hlbench.cli import main
from tests.helpers import REPO, SHORT_MEASUREMENT, TINY_WORKLOAD

MAX_LINE = 200
MEMORY_CAP = 4 << 30
BIG = 1 << 20  # a value of a megabyte, inside the file-size limit


def suite(**changes: Any) -> dict[str, Any]:
    """A valid suite as a mapping, with top-level keys replaced (a value of None drops the key)."""
    base: dict[str, Any] = {
        "backends": ["torch"],
        "device": "cpu",
        "workloads": [dict(TINY_WORKLOAD)],
        "measurement": dict(SHORT_MEASUREMENT),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def workload(**changes: Any) -> dict[str, Any]:
    """A suite whose one workload has these keys changed."""
    return suite(workloads=[{**TINY_WORKLOAD, **changes}])


def section(name: str, **values: Any) -> dict[str, Any]:
    """A suite with one section (optimizer, measurement, ...) set to these values."""
    base = suite()
    return {**base, name: {**base.get(name, {}), **values}}


def dump(doc: dict[str, Any]) -> bytes:
    """YAML for a mapping; `inf`/`nan` floats come out as .inf/.nan, as a person writes them."""
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=10**9).encode()


def alias_bomb(levels: int = 9) -> bytes:
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def deep_block(depth: int) -> bytes:
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)).encode() + b"  " * depth + b"x\n"


INF, NAN = float("inf"), float("nan")

# case -> (file bytes, or a callable writing the case's files into a directory and returning the
# suite path; words the error line must contain)
Maker = Callable[[Path], Path]
CASES: dict[str, tuple[bytes | Maker, list[str]]] = {
    # decoding
    "latin-1 byte": (dump(suite()) + b"description: caf\xe9\n", ["UTF-8"]),
    "utf-16 with BOM": (dump(suite()).decode().encode("utf-16"), ["UTF-16"]),
    "utf-16-le without BOM": (dump(suite()).decode().encode("utf-16-le"), ["NUL"]),
    "NUL byte": (dump(suite()) + b"\x00", ["NUL"]),
    "control character": (dump(suite(description="a\x07b")).replace(b"\\a", b"\x07"), ["#x0007"]),
    "over 4 MiB": (dump(suite()) + b"#" * (5 << 20) + b"\n", ["4 MiB"]),
    "empty file": (b"", ["mapping"]),
    # structure
    "top-level list": (b"- backends\n- workloads\n", ["mapping"]),
    "top-level scalar": (b"just a string\n", ["mapping"]),
    "unparsable": (b"name: [unclosed\n", ["line"]),
    "deep flow nesting": (b"description: " + b"[" * 100_000 + b"\n", ["nested deeper"]),
    "deep block nesting": (dump(suite()) + deep_block(200), ["nested deeper"]),
    "deep flow mappings": (b"a: " + b"{a: " * 50_000 + b"\n", ["nested deeper"]),
    "alias bomb": (alias_bomb(), ["aliases expand"]),
    "alias bomb of mappings": (
        b"a: &a {x: 1, y: 2, z: 3, w: 4}\n"
        + b"".join(
            f"{c}: &{c} {{p: *{p}, q: *{p}, r: *{p}, s: *{p}, t: *{p}, u: *{p}}}\n".encode()
            for p, c in zip("abcdefghij", "bcdefghijk")
        ),
        ["aliases expand"],
    ),
    "recursive alias": (b"backends: &a [torch, *a]\n", ["refers to the node"]),
    "sequence as a key": (b"? [a, b]\n: 1\n", ["mapping key"]),
    "mapping as a key": (b"{? {a: 1} : 2}\n", ["mapping key"]),
    "integer key": (dump(suite()) + b"1: 2\n", ["string"]),
    "duplicate key": (dump(suite()) + b"device: cpu\n", ["duplicate key"]),
    "python tag": (b"backends: !!python/object/apply:os.system [true]\n", ["not allowed"]),
    "huge unknown key": (dump(suite()) + b"k" * BIG + b": 1\n", []),
    "huge device value": (dump(suite(device="x" * BIG)), ["device"]),
    "huge backend name": (dump(suite(backends=["b" * BIG])), ["unknown backend"]),
    "huge size value": (dump(workload(size="s" * BIG)), ["workloads.0.size"]),
    # non-finite floats
    "lr .inf": (dump(section("optimizer", lr=INF)), ["optimizer.lr", "finite"]),
    "lr -.inf": (dump(section("optimizer", lr=-INF)), ["optimizer.lr"]),
    "lr .nan": (dump(section("optimizer", lr=NAN)), ["optimizer.lr", "finite"]),
    "eps .inf": (dump(section("optimizer", eps=INF)), ["optimizer.eps", "finite"]),
    "weight decay .inf": (dump(section("optimizer", weight_decay=INF)), ["weight_decay"]),
    "grad clip .nan": (dump(section("optimizer", grad_clip_norm=NAN)), ["grad_clip_norm"]),
    "beta .nan": (dump(section("optimizer", betas=[NAN, 0.9])), ["betas"]),
    "budget .inf": (dump(section("measurement", budget_s=INF)), ["budget_s"]),
    "timeout .nan": (dump(section("measurement", timeout_s=NAN)), ["timeout_s"]),
    "timeout 1e300": (dump(section("measurement", timeout_s=1e300)), ["timeout_s"]),
    "telemetry interval .inf": (dump(section("telemetry", interval_s=INF)), ["interval_s"]),
    "augmentation rate .nan": (
        dump(
            suite(
                axes={"augmentation": ["noisy"]},
                augmentation={"noisy": {"method": "token_replace", "rate": NAN}},
            )
        ),
        ["augmentation.noisy"],
    ),
    # integers out of range
    "batch size 10^30": (dump(workload(batch_size=10**30)), ["batch_size"]),
    "seq_len 10^30": (dump(workload(seq_len=10**30)), ["seq_len"]),
    "steps 10^30": (dump(section("measurement", steps=10**30)), ["measurement.steps"]),
    "warmup 10^30": (dump(section("measurement", warmup_steps=10**30)), ["warmup_steps"]),
    "windows 10^30": (dump(section("measurement", windows=10**30)), ["windows"]),
    "repeats 10^30": (dump(section("measurement", repeats=10**30)), ["repeats"]),
    "seed 10^30": (dump(suite(seed=10**30)), ["seed"]),
    "seed 2^32": (dump(suite(seed=2**32)), ["seed"]),
    "seed -1": (dump(suite(seed=-1)), ["seed"]),
    "seed of 5000 digits": (dump(suite()) + b"seed: " + b"7" * 5000 + b"\n", ["4300 digits"]),
    "hex seed of 5000 digits": (dump(suite()) + b"seed: 0x" + b"f" * 5000 + b"\n", ["seed"]),
    "lr 1e99999": (dump(section("optimizer", lr="LR")).replace(b"LR", b"1e99999"), ["finite"]),
    "accumulation 10^30": (dump(suite(axes={"accumulation": [10**30]})), ["accumulation"]),
    "vocab size 10^12": (dump(workload(vocab_size=10**12)), ["vocab_size"]),
    "markov vocab 10^9": (dump(workload(data={"kind": "markov", "vocab": 10**9})), ["vocab"]),
    "markov branching 10^6": (
        dump(workload(data={"kind": "markov", "branching": 10**6})),
        ["branching"],
    ),
    "markov chain too big": (dump(workload(vocab_size=1 << 18)), ["vocab × branching"]),
    "ranks 10^30": (dump(suite(launcher={"nproc_per_node": 10**30})), ["nproc_per_node"]),
    "device cuda:10^30": (dump(suite(device=f"cuda:{10**30}")), ["device"]),
    "a matrix of 10^12 cells": (
        dump(
            suite(
                axes={
                    "accumulation": list(range(1, 1001)),
                    "pruning": [f"p{i}" for i in range(1000)],
                },
                workloads=[{**TINY_WORKLOAD, "name": f"w{i}"} for i in range(1000)],
            )
        ),
        ["cells"],
    ),
    # names that are not one safe path component
    "name .": (dump(suite(name=".")), ["name", "only dots"]),
    "name ..": (dump(suite(name="..")), ["name", "only dots"]),
    "name with a slash": (dump(suite(name="a/../../b")), ["name"]),
    "empty name": (dump(suite(name="")), ["name"]),
    "name of 1000 characters": (dump(suite(name="n" * 1000)), ["name"]),
    "workload name ..": (dump(workload(name="..")), ["workloads.0.name"]),
}


def write_to(name: str, text: bytes) -> Maker:
    def make(d: Path) -> Path:
        (d / name).write_bytes(text)
        return d / name

    return make


def data_file(make_data: Callable[[Path], str]) -> Maker:
    """A suite whose byte corpus is whatever `make_data` makes (returning the path to write)."""

    def make(d: Path) -> Path:
        path = d / "suite.yaml"
        path.write_bytes(dump(workload(data={"kind": "bytes", "path": make_data(d)})))
        return path

    return make


def fifo(d: Path) -> str:
    os.mkfifo(d / "pipe")
    return "pipe"


def sparse(d: Path) -> str:
    with open(d / "huge.txt", "wb") as f:
        f.truncate((1 << 30) + 1)
    return "huge.txt"


def suite_path_is(target: Callable[[Path], Path]) -> Maker:
    return target


MADE: dict[str, tuple[Maker, list[str]]] = {
    "stem .": (write_to("..yaml", dump(suite())), ["file name"]),
    "stem ..": (write_to("...yaml", dump(suite())), ["file name"]),
    "stem with a space": (write_to("my suite.yaml", dump(suite())), ["file name"]),
    "data file /dev/zero": (data_file(lambda d: "/dev/zero"), ["character device"]),
    "data file a directory": (data_file(lambda d: str(d)), ["directory"]),
    "data file a FIFO": (data_file(fifo), ["FIFO"]),
    "data file missing": (data_file(lambda d: "nope.txt"), ["no such file", "nope.txt"]),
    "data file over 1 GiB": (data_file(sparse), ["1 GiB"]),
    "suite is /dev/zero": (lambda d: Path("/dev/zero"), ["character device"]),
    "suite is a directory": (lambda d: d, ["directory"]),
    "suite is a FIFO": (lambda d: d / fifo(d), ["FIFO"]),
    "suite is missing": (lambda d: d / "absent.yaml", ["cannot read"]),
}
ALL = {**{k: (write_to("suite.yaml", v), w) for k, (v, w) in CASES.items()}, **MADE}  # type: ignore[arg-type]

# through the CLI in a subprocess, with and without --dry-run (the rest run `main` in-process)
VIA_CLI = [
    "alias bomb",
    "deep flow nesting",
    "utf-16 with BOM",
    "NUL byte",
    "over 4 MiB",
    "sequence as a key",
    "lr .inf",
    "seed 10^30",
    "markov chain too big",
    "name ..",
    "data file /dev/zero",
    "data file over 1 GiB",
]


def check_line(err: str, words: list[str]) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[:2000]
    line = lines[0]
    assert line.startswith("hlbench: error: "), line
    assert len(line) <= MAX_LINE, (len(line), line)
    assert "Traceback" not in err
    for word in words:
        assert word in line, (word, line)


def test_enough_cases() -> None:
    assert len(ALL) >= 40
    assert set(VIA_CLI) <= set(ALL)


@pytest.mark.parametrize("case", sorted(ALL))
def test_refused_in_process(case: str, tmp_path: Path, capsys, monkeypatch) -> None:
    make, words = ALL[case]
    path = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path), "--dry-run"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    check_line(captured.err, words)
    assert not (tmp_path / "results").exists()


def capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def run_capped(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    env = env or {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "hlbench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=capped,
    )


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("case", VIA_CLI)
def test_refused_by_the_cli(case: str, dry_run: bool, tmp_path: Path) -> None:
    make, words = ALL[case]
    path = make(tmp_path)
    proc = run_capped(["run", str(path), *(["--dry-run"] if dry_run else [])], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stdout == ""
    check_line(proc.stderr, words)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "source, words",
    [
        ("raise RuntimeError('broken plugin ' + 'x' * 10000)\n", ["RuntimeError", "broken"]),
        ("def (:\n", ["SyntaxError"]),
        ("import sys\nsys.exit(3)\n", ["SystemExit"]),
        ("SPEC = 42\n", ["expected a BackendSpec"]),
    ],
    ids=["runtime error", "syntax error", "sys.exit", "not a spec"],
)
def test_hlbench_backends_import_failure(source: str, words: list[str], tmp_path: Path) -> None:
    (tmp_path / "badplugin.py").write_text(source)
    path = tmp_path / "suite.yaml"
    path.write_bytes(dump(suite()))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]),
        "HLBENCH_BACKENDS": "bad=badplugin:SPEC",
    }
    proc = run_capped(["run", str(path), "--dry-run"], tmp_path, env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    check_line(proc.stderr, ["HLBENCH_BACKENDS entry 'bad=badplugin:SPEC'", *words])
    assert not (tmp_path / "results").exists()
