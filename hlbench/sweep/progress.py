"""Progress over a run's cells (tqdm: a bar with the current cell and an ETA) and the final
summary."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate
from tqdm import tqdm

from hlbench.sweep.plan import Task


class Progress:
    def __init__(self, tasks: list[Task], enabled: bool = True) -> None:
        # The ETA is tqdm's: mean time per finished cell × cells left; cells differ, so it is a
        # guide. disable=None is tqdm's "off unless stderr is a terminal": redirected to a file or
        # a CI log, a bar is only carriage-return noise.
        disable = None if enabled else True
        self.bar = tqdm(total=len(tasks), unit="cell", disable=disable, dynamic_ncols=True)

    def start(self, task: Task) -> None:
        self.bar.set_postfix_str(task.label, refresh=True)

    def record(self, task: Task, record: dict[str, Any]) -> None:
        if record["status"] not in ("ok", "skipped"):
            self.bar.write(f"{record['status']}: {task.label}: {record['reason']}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

    @staticmethod
    def summary(records: list[dict[str, Any]]) -> str:
        rows = []
        for r in records:
            metrics, loss = r.get("metrics") or {}, r.get("loss") or {}
            note = r["reason"] or ""
            if r["timing"] and r["timing"]["budget_hit"]:
                timing = r["timing"]
                note = (
                    f"time budget hit: {timing['steps_measured']} of "
                    f"{timing['steps_planned']} steps"
                )
            rows.append(
                [
                    r["cell_id"] + (f"#{r['repeat']}" if r["repeat"] else ""),
                    r["status"],
                    metrics.get("tokens_per_s"),
                    metrics.get("step_time_median_s"),
                    loss.get("excess_eval_loss_nats"),
                    note[:70],
                ]
            )
        return tabulate(
            rows,
            headers=[
                "cell",
                "status",
                "tokens/s",
                "step median (s)",
                "excess eval loss (nats)",
                "note",
            ],
            floatfmt=(
                ".0f",
                ".0f",
                ",.0f",
                ".4f",
                ".4f",
                ".0f",
            ),  # per column: tokens/s as 13,117 not 1.312e+04
            missingval="-",
        )
