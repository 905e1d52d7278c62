"""What the command line's parts share: a user's mistake is one line on stderr, not a
traceback (exit status 2 for a usage error, 1 for a failure while running)."""


class CommandError(Exception):
    """A mistake in the command or its environment, shown as ``gpuad: <message>``."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def one_line(message):
    """``message`` on one line, starting ``gpuad: `` (gpuad's own messages already do)."""
    text = " ".join(str(message).split())
    return text if text.startswith("gpuad: ") else f"gpuad: {text}"
