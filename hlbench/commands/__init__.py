"""Subcommands of `hlbench` beyond env, one module each (see hlbench.cli.COMMAND_MODULES)."""
