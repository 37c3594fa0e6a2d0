"""User-facing errors: one clear line naming the problem, caught by the CLI."""


class FarmError(Exception):
    """A problem with the user's input or environment, printed as one line and exit code 2."""


class Stopped(KeyboardInterrupt):
    """farm was told to stop (SIGTERM): unwinds like Ctrl-C, so runs and campaigns record it."""


EXCERPT_CHARS = 40


def excerpt(text: str | bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short, escaped excerpt of untrusted text for an error line (never the whole content)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    short = text[:limit]
    return repr(short) + ("..." if len(text) > limit else "")


ROOT_CAUSE_MARKERS = ("Error", "Exception", "Fault", "Output")


def root_cause(exc: BaseException, limit: int = 400) -> str:
    """The last meaningful line of a (Ray-wrapped) error chain, for one-line reports."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if any(marker in line for marker in ROOT_CAUSE_MARKERS):
            return line[:limit]
    return (lines[-1] if lines else type(exc).__name__)[:limit]
