"""Errors of the accounts layer: each names the field that was wrong.

Raised before anything is written (validation) or when a script refuses the whole operation.
"""

from __future__ import annotations


class AccountError(Exception):
    """Base of account errors; ``field`` names the offending argument."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownAccount(AccountError):
    """No account with this id (or MSISDN)."""


class AccountExists(AccountError):
    """The account id or one of its MSISDNs is already taken."""


class CurrencyMismatch(AccountError):
    """An amount in another currency than the account's."""


class InvalidAmount(AccountError):
    """A negative, malformed, float or out-of-range amount."""


class OpIdConflict(AccountError):
    """The op id was already used for a request with other content."""


class InvalidState(AccountError):
    """The account cannot do this now (terminated, second base offer, unknown offer, ...)."""
