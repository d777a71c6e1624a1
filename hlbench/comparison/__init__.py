"""Comparing runs: per-cell statistics and verdicts (verdicts), whether two runs may be compared
(comparability), stored baselines (baseline), and rendering a comparison (render)."""
