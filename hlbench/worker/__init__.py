"""The child side of a run: `python -m hlbench.worker CELL_JSON RESULT_JSON` trains one cell in a
fresh interpreter (main), from its inputs (inputs) through the measured loop (train, measure) and,
for data-parallel cells, combines the ranks' figures (ranks). Nothing here imports the parent
(hlbench.sweep)."""
