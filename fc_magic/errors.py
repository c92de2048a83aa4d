"""The project's exception types: what a user did wrong, and what a service did."""
from __future__ import annotations


class FCMagicError(Exception):
    """Base of every error fc_magic raises on purpose; its message is one line."""


class InputProblem(FCMagicError, ValueError):
    """A user mistake in what was passed to a magic; the magic shows it as a UsageError."""


class ServiceUnavailable(FCMagicError):
    """A storage or compute service stopped answering (network, a stopped sandbox)."""
