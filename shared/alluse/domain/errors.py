"""Errors the domain raises: each names the field (or entity) and the rule it broke.

Every door (CLI, Lambda handler, local runtime) turns these into a clear message and a
non-zero exit / 4xx response; none of them is ever a traceback for the user.
"""

from __future__ import annotations


class AllUseError(Exception):
    """Base of every expected, user-facing error."""

    code: str = "ALLUSE_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        if not self.field or self.message.startswith(f"{self.field}:"):
            return self.message
        return f"{self.field}: {self.message}"


class ValidationFailed(AllUseError):
    """Input breaks a rule; nothing was changed."""

    code = "VALIDATION_FAILED"

    def __init__(self, message: str, *, field: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message, field=field)
        self.problems = problems or [str(self)]


class NotFound(AllUseError):
    code = "NOT_FOUND"


class Conflict(AllUseError):
    """The request clashes with stored state (duplicate id, concurrent update)."""

    code = "CONFLICT"


class IllegalTransition(AllUseError):
    code = "ILLEGAL_TRANSITION"


class InsufficientFunds(AllUseError):
    code = "INSUFFICIENT_FUNDS"


class MarketDataGap(AllUseError):
    """A bar, price or chain the caller needs does not exist (closed day, missing data, the future)."""

    code = "MARKET_DATA_GAP"
