"""Errors the user can act on: the CLI prints their message on one line and exits non-zero."""


class HnasError(ValueError):
    """A problem with the user's input; the message names the problem and the fix."""


class DeviceGone(HnasError):
    """A measuring device stopped answering and did not come back: what was measured is saved, so the same
    command, run again, goes on (the CLI says so after the message)."""
