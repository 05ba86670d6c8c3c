"""Errors the user can act on: the CLI prints their message on one line and exits non-zero."""


class HnasError(ValueError):
    """A problem with the user's input; the message names the problem and the fix."""
