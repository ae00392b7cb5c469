class EmbodiedError(Exception):
    """A user-facing error: the CLI prints its message as one line and exits non-zero.

    The message names the file, field or value at fault and what was expected.
    """
