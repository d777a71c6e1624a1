"""The report's one quality setting, in a module of its own so that both the package entry point
(`write_report`'s default) and the frontier read it without importing each other, and without
loading
pandas at `import hlbench.reporting`."""

# Quality limit of the frontier's recommendations: excess eval loss within this of the fp32
# baseline.
DEFAULT_TOLERANCE_NATS = 0.02
