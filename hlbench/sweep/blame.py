"""How a cell's processes ended, as one record: which rank failed first, and why.

A data-parallel cell has several processes; when one fails the others fail too (a collective's
"connection reset by peer", torchrun's SIGTERM to the survivors). The record must name the cause,
not the consequences. Each rank writes its own outcome (`result.rank<R>.json`, hlbench.worker) with
the time it caught its exception; a rank that died without writing one (a signal, a hard exit) is
known from torchrun's failure summary or from the parent's own watch over TF workers
(group_failure says in which order these count). The other ranks' failures only annotate the reason.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

from hlbench.cell import Cell
from hlbench.sweep.launch import Rendezvous

LOG_TAIL_LINES = 20


def rank_results(result_file: Path) -> dict[int, dict[str, Any]]:
    """rank -> that rank's own outcome, for the ranks of this node that wrote one."""
    out = {}
    for path in result_file.parent.glob(f"{result_file.stem}.rank*.json"):
        try:
            out[int(path.stem.rpartition(".rank")[2])] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # torn or foreign: the group's exit codes still tell what happened
    return dict(sorted(out.items()))


def failed_rank_outcome(ranks: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """One record's outcome from the rank that failed in Python (oom, error) first — by the time
    each rank caught its exception; a peer's "connection reset" comes after the failure that caused
    it — naming it and the other ranks that failed; None when none did."""
    failed = {r: res for r, res in ranks.items() if res.get("status") in ("oom", "error")}
    if not failed:
        return None
    first = min(failed, key=lambda r: (failed[r].get("failed_at_monotonic_s") or float("inf"), r))
    res = failed[first]
    also = [r for r in failed if r != first]
    reason = f"rank {first}: {res.get('reason')}" + (
        f" (then ranks {also} failed too)" if also else ""
    )
    return {
        "status": res["status"],
        "reason": reason,
        "error": {**(res.get("error") or {}), "rank": first},
        "env_framework": res.get("framework_env"),
    }


def group_failure(
    cell: Cell,
    codes: list[int],
    ended_alone: dict[int, int],
    reported: dict[int, dict[str, Any]],
    text: str,
    rendezvous: Rendezvous,
    oom_evidence: str | None = None,
) -> dict[str, Any]:
    """The record's outcome for a group that did not end with a result (`text`: the cell's log;
    `oom_evidence`: why a SIGKILL was plausibly the kernel's OOM killer, hlbench.sweep.memwatch).

    Causes before consequences: a rank that died without a word (no outcome file: a signal, a hard
    exit), unless it was only stopped by the launcher (torchrun's SIGTERM to the survivors); else
    the rank whose Python failure (oom, error) came first; else the first process seen to fail. The
    other ranks' failures annotate the reason."""
    exits = rank_exit_codes(cell, codes, ended_alone, text, rendezvous)
    silent = sorted(
        r for r, code in exits.items() if r not in reported and code not in (0, -signal.SIGTERM)
    )
    failed = failed_rank_outcome(reported)
    if failed is not None and not silent:
        return failed
    if silent:
        rank, returncode = silent[0], exits[silent[0]]
    else:  # nobody spoke, and no rank is known to have died alone: the first failing process
        rank, returncode = None, next((c for c in codes if c != 0), codes[0] if codes else 0)
    who = (
        "worker"
        if cell.launch is None
        else f"rank {rank}"
        if rank is not None
        else "a process of the cell"
    )
    crashed = died(returncode, text, who, oom_evidence)
    if failed is not None:
        crashed["reason"] += f"; then {failed['reason']}"[:300]
    return crashed


def rank_exit_codes(
    cell: Cell, codes: list[int], ended_alone: dict[int, int], log_text: str, rendezvous: Rendezvous
) -> dict[int, int]:
    """rank -> exit code of this node's ranks that ended by themselves, as far as known: torchrun's
    failure summary for its ranks; for TF workers the processes the parent did not kill (after one
    fails it kills the others, whose SIGKILL is then no evidence); the one process of a mirrored
    cell."""
    if cell.launch is None:
        return {}
    strategy = cell.launch.strategy
    if strategy in ("ddp", "fsdp"):
        return {int(rank): int(code) for rank, code in _TORCHRUN_FAILURE.findall(log_text)}
    if strategy == "multi_worker":
        base = rendezvous.node_rank * cell.launch.nproc_per_node
        return {base + index: code for index, code in ended_alone.items()}
    return {0: codes[0]} if codes else {}


def died(
    returncode: int, log_text: str, who: str, oom_evidence: str | None = None
) -> dict[str, Any]:
    """A crashed record: `who` died by a signal or exited without a result. A SIGKILL names the
    kernel's OOM killer only with `oom_evidence` (else a person's `kill -9` would be blamed on
    memory)."""
    tail = log_text.splitlines()[-LOG_TAIL_LINES:]
    if returncode < 0:
        name = signal.Signals(-returncode).name
        oom_killer = name == "SIGKILL" and oom_evidence
        return {
            "status": "crashed",
            "reason": f"{who} killed by {name}"
            + (f" (likely the kernel's OOM killer: {oom_evidence})" if oom_killer else ""),
            "signal": name,
            "error": {"type": "crash", "message": name, "traceback_tail": tail},
        }
    return {
        "status": "crashed",
        "reason": f"{who} exited with code {returncode} without a result",
        "exit_code": returncode,
        "error": {"type": "crash", "message": f"exit code {returncode}", "traceback_tail": tail},
    }


# one entry of torchrun's failure summary ("Failures:" and "Root Cause"): rank, then its exit code
_TORCHRUN_FAILURE = re.compile(
    r"^\s*rank\s*:\s*(\d+) \(local_rank: \d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", re.M
)
