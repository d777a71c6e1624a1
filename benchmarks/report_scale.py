"""How long `hlbench report` takes over 10,000 records (target: under 5 s), and where the time goes.

    python benchmarks/report_scale.py          # 4 workloads × 2 backends × 3 precisions
                                               # × 4 accumulations × 3 pruning methods
                                               # = 288 cells × 35 repeats = 10,080 records
    python benchmarks/report_scale.py --repeats 4 --workloads 36   # wide: 2,592 cells × 4 repeats

Records are clones of the committed fixture records, which the real writers produced
(tests/data/scale.py varies their ids and numbers), written to a temporary directory; the report and
its plots go there too. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.data.scale import synthetic_records  # noqa: E402  (clones of real fixture records)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workloads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=35)
    args = parser.parse_args()

    from hlbench.reporting import render, write_report
    from hlbench.reporting.cells import summarize
    from hlbench.results import load

    with tempfile.TemporaryDirectory(prefix="hlbench-scale-") as tmp:
        records = synthetic_records(args.workloads, args.repeats)
        path = Path(tmp) / "scale.jsonl"
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        print(f"{len(records)} records, {path.stat().st_size / 2**20:.1f} MiB")

        t0 = time.perf_counter()
        df = load([path])
        t1 = time.perf_counter()
        cells = summarize(df)
        t2 = time.perf_counter()
        render([path], Path(tmp) / "noplots.md", draw_plots=False)
        t3 = time.perf_counter()
        out = write_report([path], Path(tmp) / "report.md")
        t4 = time.perf_counter()
        print(f"load: {t1 - t0:.2f} s   summarize ({len(cells)} cells): {t2 - t1:.2f} s")
        print(
            f"report without plots: {t3 - t2:.2f} s   full report with plots: {t4 - t3:.2f} s "
            f"({out.stat().st_size / 1024:.0f} KiB of markdown)"
        )


if __name__ == "__main__":
    main()
