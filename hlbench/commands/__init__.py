"""Subcommands of `hlbench` beyond run/env, one module each (see hlbench.cli.COMMAND_MODULES)."""
