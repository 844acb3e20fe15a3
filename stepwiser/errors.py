"""Errors a user can act on. The CLI prints their message on one line and exits 1."""


class StepwiserError(RuntimeError):
    """A runtime failure with a message that says what to do."""


class ConfigMismatchError(StepwiserError):
    """An output exists that was made with a different config or different inputs (C7)."""


class EmptyResultError(StepwiserError):
    """A run that would produce no records (an empty input, or every item skipped): never "complete"."""
