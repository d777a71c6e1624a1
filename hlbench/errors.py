"""The exceptions that cross layers: UsageError (the CLI turns it into one line and exit code 2) and
SkipCell (a worker turns it into a `skipped` record)."""


class UsageError(Exception):
    """Bad input the user can fix (suite file, command-line arguments, records file).

    The message is one line naming the file, the key path and what was expected.
    """


class SkipCell(Exception):
    """Raised while preparing a cell that cannot run here (absent device, a value the backend or the
    model does not implement); the worker records it as `skipped` with the message as the reason."""
