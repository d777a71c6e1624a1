"""The one exception type that the CLI turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input the user can fix (suite file, command-line arguments, records file).

    The message is one line naming the file, the key path and what was expected.
    """
