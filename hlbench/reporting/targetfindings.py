"""Findings of time-to-target records: per cell that differs from the baseline (a lower precision,
accumulation steps, pruning) and has a baseline twin (hlbench.reporting.quality.twin_of), one
sentence with the ratio of median times to target and its 95% interval, the share of seeds that
reached the target, the ratio of tokens to target (the hardware-independent part), and the final
excess loss against the twin's with the interval of the difference. An interval that includes 1
(ratios) or 0 (excess loss) is said to be one: no measurable change; one that does not is called
a measurable change, with its direction.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from hlbench.records.quality import parse_target_label
from hlbench.reporting import formatting as fmt
from hlbench.reporting.quality import (
    BASELINE,
    INTERVAL,
    NOT_REACHED,
    summarize_targets,
    twin_of,
    vs_twin,
)

# What the twin is called when the cell differs from it on one axis only
BASELINE_NAMES = {"precision": "fp32", "accumulation": "1 step", "pruning": "the unpruned cell"}
VARIANT_KEYS = ("compile", "augmentation", "hold")


def target_findings(df: pd.DataFrame) -> list[str]:
    """One sentence per non-baseline time-to-target cell with a baseline twin."""
    cells = summarize_targets(df)
    out = []
    for _, row in cells.iterrows():
        twin = twin_of(row, cells)
        if twin is not None:
            out.append(sentence(row, twin))
    return out


def _differing(row: pd.Series) -> list[str]:
    return [k for k, v in BASELINE.items() if row.get(k) != v]


def _what(row: pd.Series) -> str:
    parts = []
    for key in _differing(row):
        value = row.get(key)
        if key == "precision":
            parts.append(str(value))
        elif key == "accumulation":
            steps = int(value) if isinstance(value, float) and value.is_integer() else value
            parts.append(f"{steps} accumulation steps")
        else:
            parts.append(f"{value} pruning")
    return " + ".join(parts)


def _baseline(row: pd.Series) -> str:
    differing = _differing(row)
    return (
        BASELINE_NAMES[differing[0]] if len(differing) == 1 else "the fp32, 1-step, unpruned twin"
    )


def _where(row: pd.Series) -> str:
    extra = [
        f"{k} {row.get(k)}" for k in VARIANT_KEYS if not fmt.missing(row.get(k)) and row.get(k)
    ]
    backend = fmt.backend_name(str(row.get("backend")))
    return f"{row.get('workload')} ({', '.join([backend, *extra])})"


def _goal(label: str) -> str:
    parsed = parse_target_label(label)
    if parsed is None:
        return str(label)
    kind, value = parsed
    return f"{value:g} nats of the floor" if kind == "excess_nats" else f"eval loss {value:g}"


def _share(row: pd.Series) -> str:
    return f"{row['n_reached']}/{row['n']} seeds"


def _seconds(x: float) -> str:
    return NOT_REACHED if math.isinf(x) else f"{x:.3g} s"


def sentence(row: pd.Series, twin: pd.Series) -> str:
    """The time-to-target finding of a cell against its baseline twin."""
    what, base, goal = _what(row), _baseline(row), _goal(str(row["target"]))
    plural = what.endswith("steps")  # "4 accumulation steps reach"
    reaches, does = ("reach", "do") if plural else ("reaches", "does")
    ours, theirs = row["ttt"][0], twin["ttt"][0]
    if math.isfinite(ours) and math.isfinite(theirs):
        value, lo, hi = vs_twin(row, twin)
        bounds = "" if fmt.missing(lo) else f" [{_bound(lo)}–{_bound(hi)}]"
        text = (
            f"{what} {reaches} {goal} in {value:.2f}× {base}'s time{bounds}, {_share(row)} "
            f"({base}: {_share(twin)})"
        )
        text += _verdict(lo, hi, 1.0, "time to target", ("slower", "faster"))
        text += _tokens(row, twin)
    elif math.isfinite(theirs):
        text = (
            f"{what} {does} not reach {goal} within the budget in the median seed: "
            f"{_share(row)} reached ({base}: {_share(twin)}, median {_seconds(theirs)})"
        )
    elif math.isfinite(ours):
        text = (
            f"{what} {reaches} {goal} in {_seconds(ours)}, {_share(row)}; {base} does not within "
            f"the budget in the median seed ({_share(twin)} reached)"
        )
    else:
        text = (
            f"neither {what} ({_share(row)}) nor {base} ({_share(twin)}) reaches {goal} within "
            "the budget in the median seed"
        )
    return f"{_where(row)}: {text}{_final_excess(row, twin)}."


def _bound(x: float) -> str:
    return "unbounded" if math.isinf(x) else f"{x:.2f}"


def _final_excess(row: pd.Series, twin: pd.Series) -> str:
    """'; final excess loss a vs b nats, difference d [lo, hi]' (median over seeds of each run's
    last eval); without a floor the same of the final eval loss."""
    what, key, draws = "final excess loss", "final_excess", "final_draws"
    if fmt.missing(row[key][0]) or fmt.missing(twin[key][0]):
        what, key, draws = "final eval loss", "final_eval", "final_eval_draws"
    ours, theirs = row[key][0], twin[key][0]
    if fmt.missing(ours) or fmt.missing(theirs):
        return ""
    text = f"; {what} {fmt.nats(ours)} vs {fmt.nats(theirs)} nats"
    a, b = row[draws], twin[draws]
    if len(a) == 0 or len(b) == 0:
        return text
    lo, hi = (float(v) for v in np.percentile(a - b, INTERVAL))
    text += (
        f", difference {fmt.nats(ours - theirs, signed=True)} "
        f"[{fmt.nats(lo, signed=True)}, {fmt.nats(hi, signed=True)}]"
    )
    return text + _verdict(lo, hi, 0.0, what, ("higher", "lower"))


def _verdict(lo: float, hi: float, none: float, what: str, words: tuple[str, str]) -> str:
    """' — the interval includes 1: no measurable change in X', or whether it is measurably
    above or below `none` (the value of no change)."""
    if fmt.missing(lo) or fmt.missing(hi):
        return ""
    if lo <= none <= hi:
        return f" — the interval includes {none:g}: no measurable change in {what}"
    return f" — measurably {words[0] if lo > none else words[1]}"


def _tokens(row: pd.Series, twin: pd.Series) -> str:
    """'; tokens to target r× [lo–hi]': the hardware-independent part of the time ratio."""
    value, lo, hi = vs_twin(row, twin, "tokens")
    if fmt.missing(value):
        return ""
    bounds = "" if fmt.missing(lo) else f" [{_bound(lo)}–{_bound(hi)}]"
    text = f"; tokens to target {value:.2f}×{bounds}"
    if not fmt.missing(lo) and lo <= 1.0 <= hi:
        return text + " (no measurable change in tokens: the time differs by step speed)"
    return text + _verdict(lo, hi, 1.0, "tokens to target", ("more", "fewer"))
