"""`hlbench compare --format junit`: the comparison as JUnit XML, for a CI's test view.

One test case per cell × metric (classname = the cell id, name = the metric): `regressed` and
`failed` (ok in the baseline, failed in the candidate) are failures with the change as message,
`inconclusive` is skipped with the reason, `unchanged`, `improved` and `not available` pass, so the
test view agrees with compare's exit status. Runs that are not comparable, or have nothing in
common, are one test case with an error. The elements and attributes are the ones the common JUnit
schemas (Jenkins, Maven Surefire) require: testsuites > testsuite(name, tests, failures, errors,
skipped, time, timestamp, hostname) > properties, testcase(classname, name, time), system-out,
system-err.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from hlbench.comparison.metrics import METRICS
from hlbench.comparison.render import Report, format_value
from hlbench.comparison.runs import CellResult
from hlbench.comparison.verdicts import FAILED, INCONCLUSIVE, REGRESSED

SUITE_NAME = "hlbench compare"


def render_junit(report: Report, elapsed_s: float = 0.0) -> str:
    """The XML document; `elapsed_s`: how long the comparison took (the suite's time)."""
    suite = ET.Element("testsuite")
    properties = ET.SubElement(suite, "properties")
    for name, value in _properties(report).items():
        ET.SubElement(properties, "property", name=name, value=value)
    cases = [_case(r) for r in report.comparison.results] if report.comparison else []
    if report.comparison is None or not cases:
        cases.append(_refused(report))
    suite.extend(cases)
    ET.SubElement(suite, "system-out").text = _fine_print(report)
    ET.SubElement(suite, "system-err").text = ""
    counts = {
        "tests": len(cases),
        "failures": sum(1 for c in cases if c.find("failure") is not None),
        "errors": sum(1 for c in cases if c.find("error") is not None),
        "skipped": sum(1 for c in cases if c.find("skipped") is not None),
    }
    attributes = {
        "name": SUITE_NAME,
        **{k: str(v) for k, v in counts.items()},
        "time": f"{elapsed_s:.3f}",
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": socket.gethostname() or "localhost",
    }
    suite.attrib.update(attributes)
    root = ET.Element(
        "testsuites",
        name=SUITE_NAME,
        time=attributes["time"],
        **{k: str(v) for k, v in counts.items()},
    )
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _properties(report: Report) -> dict[str, str]:
    t = report.thresholds
    return {
        "baseline": report.baseline,
        "candidate": report.candidate,
        "baseline_run_ids": ",".join(report.run_ids[0]),
        "candidate_run_ids": ",".join(report.run_ids[1]),
        "verdict": report.verdict,
        "exit_code": str(report.exit_code),
        "metrics": ",".join(report.metrics),
        "alpha": f"{t.alpha:g}",
        "threshold": f"{t.threshold:g}",
        "min_samples": str(t.min_samples),
        "noise": report.noise or "none",
    }


def _case(result: CellResult) -> ET.Element:
    c, unit = result.comparison, METRICS[result.metric].unit
    case = ET.Element("testcase", classname=result.cell_id, name=result.metric, time="0")
    detail = (
        f"{METRICS[result.metric].label}: baseline {format_value(c.median_baseline, unit)}, "
        f"candidate {format_value(c.median_candidate, unit)}, change {_percent(c.change)}, "
        f"CI {_interval(c.ci_low, c.ci_high)}, p {_number(c.p_value)}, runs "
        f"{c.n_baseline}/{c.n_candidate}, verdict {c.verdict}"
        + (f" ({c.note})" if c.note else "")
        + f"; cell hash {result.cell_hash}"
    )
    if c.verdict == REGRESSED:
        message = f"regressed: {_percent(c.change)} (CI {_interval(c.ci_low, c.ci_high)})"
        ET.SubElement(case, "failure", message=message, type=REGRESSED).text = detail
    elif c.verdict == FAILED:
        message = f"failed in the candidate: {c.note}"
        ET.SubElement(case, "failure", message=message, type=FAILED).text = detail
    elif c.verdict == INCONCLUSIVE:
        ET.SubElement(case, "skipped", message=f"inconclusive: {c.note}")
    if case.find("failure") is None:  # a failure carries the figures already
        ET.SubElement(case, "system-out").text = detail
    return case


def _refused(report: Report) -> ET.Element:
    """Nothing was compared: one test case that errs, with why (compare exits 2)."""
    case = ET.Element("testcase", classname=SUITE_NAME, name="comparability", time="0")
    fatal = "; ".join(report.differences.fatal)
    why = report.message or (f"the runs are not comparable: {fatal}" if fatal else "")
    ET.SubElement(case, "error", message=why or "nothing compared", type="incomparable").text = why
    return case


def _fine_print(report: Report) -> str:
    lines = [f"hlbench compare: {report.verdict} (exit {report.exit_code})"]
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"not comparable: {f}" for f in report.differences.fatal]
    lines += [f"could not check: {w}" for w in report.differences.warnings]
    cmp = report.comparison
    if cmp is not None:
        lines += [f"only in the baseline (not compared): {i} ({h})" for i, h in cmp.only_baseline]
        lines += [f"only in the candidate (not compared): {i} ({h})" for i, h in cmp.only_candidate]
        lines += [f"ran on neither side: {i} ({h}): {why}" for i, h, why in cmp.not_run]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _interval(low: float | None, high: float | None) -> str:
    return "—" if low is None or high is None else f"[{low:+.1%}, {high:+.1%}]"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2g}"
