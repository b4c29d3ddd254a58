"""Exact money: every amount on the ledger is an int of cents; Decimal only at the edges."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal, InvalidOperation
from fractions import Fraction
from typing import TypeVar

from alluse.domain.errors import ValidationFailed

K = TypeVar("K")

CENTS_PER_DOLLAR = 100


def parse_dollars(text: str | Decimal | int, *, field: str) -> int:
    """Turn a user amount in dollars ("500000", "1234.56") into cents; refuse what isn't exact."""
    if isinstance(text, float):  # floats are not money; refuse rather than round silently
        raise ValidationFailed("amount must be given as text or Decimal, not float", field=field)
    try:
        value = Decimal(str(text).replace(",", "").replace("_", "").strip().lstrip("$"))
    except InvalidOperation:
        raise ValidationFailed(f"'{text}' is not an amount in dollars", field=field) from None
    if not value.is_finite():
        raise ValidationFailed(f"'{text}' is not an amount in dollars", field=field)
    cents = value * CENTS_PER_DOLLAR
    if cents != cents.to_integral_value():
        raise ValidationFailed(f"{value} has more than 2 decimal places (cents are the smallest unit)", field=field)
    return int(cents)


def require_positive(cents: int, *, field: str) -> int:
    if cents <= 0:
        raise ValidationFailed(f"must be greater than 0 (got {format_cents(cents)})", field=field)
    return cents


def cents_of_price(price: float) -> int:
    """A market price (float dollars, as feeds give it) to the nearest cent, halves to even. Read through
    str(), so the decimal the feed meant is rounded, not its binary form (0.1 + 0.2 is 30 cents)."""
    return int(Decimal(str(price)).scaleb(2).to_integral_value(ROUND_HALF_EVEN))


def dollars(cents: int) -> Decimal:
    return Decimal(cents) / CENTS_PER_DOLLAR


def format_cents(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), CENTS_PER_DOLLAR)
    return f"{sign}${whole:,}.{frac:02d}"


def fraction_of(cents: int, pct: Decimal) -> int:
    """`pct` of an amount, rounded up to the cent (used for buffers: never less than the rule)."""
    return int((Decimal(cents) * pct).to_integral_value(rounding=ROUND_CEILING))


def split_by_weights(
    amount: int, weights: Mapping[K, Decimal | int], order: tuple[K, ...] | None = None
) -> dict[K, int]:
    """Split `amount` cents across keys in proportion to `weights`, to the cent, losing nothing.

    Largest-remainder (Hamilton) method on exact rationals; ties go to the key that comes
    first in `order` (default: the mapping's order), so the split is deterministic.
    Weights need not sum to 1, but must be non-negative with a positive total.
    """
    keys = tuple(order) if order is not None else tuple(weights)
    if amount < 0:
        raise ValueError("amount must be non-negative")
    exact = {k: Fraction(str(weights.get(k, 0))) for k in keys}
    if any(w < 0 for w in exact.values()):
        raise ValueError("weights must be non-negative")
    total = sum(exact.values(), Fraction(0))
    if total <= 0:
        raise ValueError("weights must have a positive total")
    quotas = {k: amount * w / total for k, w in exact.items()}
    parts = {k: int(q) for k, q in quotas.items()}  # floor: quotas are non-negative
    leftover = amount - sum(parts.values())
    by_remainder = sorted(keys, key=lambda k: (-(quotas[k] - parts[k]), keys.index(k)))
    for k in by_remainder[:leftover]:
        parts[k] += 1
    return parts
