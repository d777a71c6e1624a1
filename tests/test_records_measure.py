"""Records files (append, torn tails, damage) and the timed loop (warmup, windows, budget)."""

from __future__ import annotations

import itertools

import pytest

from hlbench.errors import UsageError
from hlbench.records import append_record, read_records
from hlbench.worker.measure import TimingPlan, run_timed, step_stats


def test_append_and_read(tmp_path):
    path = tmp_path / "r.jsonl"
    for i in range(3):
        append_record(path, {"i": i})
    assert read_records(path) == [{"i": 0}, {"i": 1}, {"i": 2}]


def test_torn_tail_is_cut_only_on_repair(tmp_path):
    path = tmp_path / "r.jsonl"
    append_record(path, {"i": 0})
    with open(path, "ab") as f:
        f.write(b'{"i": 1, "x"')
    assert read_records(path) == [{"i": 0}]
    assert path.read_bytes().endswith(b'"x"')  # reading alone changes nothing
    assert read_records(path, repair=True) == [{"i": 0}]
    assert path.read_bytes() == b'{"i":0}\n'
    assert (tmp_path / "r.jsonl.torn").read_bytes() == b'{"i": 1, "x"'
    append_record(path, {"i": 1})
    assert read_records(path) == [{"i": 0}, {"i": 1}]


def test_whole_record_missing_its_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"i":0}\n{"i":1}')
    assert read_records(path, repair=True) == [{"i": 0}, {"i": 1}]
    assert path.read_bytes() == b'{"i":0}\n{"i":1}\n'


def test_damage_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"i":0}\ngarbage\n{"i":2}\n')
    with pytest.raises(UsageError, match="line 2"):
        read_records(path, repair=True)


def _fake_clock(step_s: float):
    """A clock that advances step_s per step() call and not otherwise."""
    now = [0.0]
    return (lambda i: now.__setitem__(0, now[0] + step_s)), (lambda: now[0])


def test_windows_and_warmup_are_separate():
    step, clock = _fake_clock(0.5)
    steps_seen = []
    timing = run_timed(
        lambda i: (steps_seen.append(i), step(i)),
        lambda: None,
        TimingPlan(2, 3, 2, 1e9),
        clock=clock,
    )
    assert steps_seen == list(range(8))  # warmup 0-1, then measured 2-7, each its own batch
    assert timing.warmup_step_times_s == [0.5, 0.5]
    assert timing.window_step_times_s == [[0.5] * 3, [0.5] * 3]
    assert timing.window_wall_s == [1.5, 1.5] and not timing.budget_hit


def test_budget_stops_early_but_measures_at_least_one_step():
    step, clock = _fake_clock(1.0)
    timing = run_timed(step, lambda: None, TimingPlan(1, 10, 3, 2.5), clock=clock)
    assert timing.budget_hit and timing.steps_measured == 3 and timing.steps_planned == 30
    timing = run_timed(step, lambda: None, TimingPlan(1, 10, 3, 1e-9), clock=clock)
    assert timing.budget_hit and timing.steps_measured == 1


def test_every_clock_read_follows_a_sync():
    events = []
    counter = itertools.count()
    run_timed(
        lambda i: events.append("step"),
        lambda: events.append("sync"),
        TimingPlan(1, 2, 1, 1e9),
        clock=lambda: (events.append("clock"), next(counter))[1],
    )
    for i, event in enumerate(events):
        if event == "clock" and i > 0 and events[i - 1] == "step":
            pytest.fail(f"clock read right after a step without a sync: {events}")


def test_step_stats():
    stats = step_stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats["step_time_median_s"] == 3.0 and stats["step_time_iqr_s"] == 2.0
    assert step_stats([])["step_time_median_s"] is None
