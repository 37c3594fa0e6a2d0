"""User-facing errors: one clear line naming the problem, caught by the CLI."""


class FarmError(Exception):
    """A problem with the user's input or environment, printed as one line and exit code 2."""
