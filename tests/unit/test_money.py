from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alluse.domain.errors import ValidationFailed
from alluse.domain.money import format_cents, fraction_of, parse_dollars, split_by_weights


@pytest.mark.parametrize(
    ("text", "cents"),
    [("500000", 50_000_000), ("1234.56", 123_456), ("$1,000.5", 100_050), ("0.01", 1), (Decimal("2.10"), 210)],
)
def test_parse_dollars_exact(text: str, cents: int) -> None:
    assert parse_dollars(text, field="amount") == cents


@pytest.mark.parametrize("text", ["12.345", "abc", "", "NaN", "inf", "1e-3"])
def test_parse_dollars_refuses_inexact_or_non_numbers(text: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_dollars(text, field="amount")
    assert err.value.field == "amount"


def test_parse_dollars_refuses_float() -> None:
    with pytest.raises(ValidationFailed, match="not float"):
        parse_dollars(0.1, field="amount")  # type: ignore[arg-type]


def test_format_cents() -> None:
    assert format_cents(123_456_789) == "$1,234,567.89"
    assert format_cents(-5) == "-$0.05"


def test_fraction_of_rounds_up_to_the_cent() -> None:
    assert fraction_of(10_001, Decimal("0.05")) == 501  # 500.05 cents -> 501: the buffer is never short
    assert fraction_of(10_000, Decimal("0.05")) == 500


def test_split_by_weights_example() -> None:
    weights = {"gen": Decimal("0.40"), "rev": Decimal("0.30"), "com": Decimal("0.30")}
    assert split_by_weights(100, weights) == {"gen": 40, "rev": 30, "com": 30}
    # 1 cent left over goes to the largest remainder, ties to the first key
    assert split_by_weights(1, weights) == {"gen": 1, "rev": 0, "com": 0}
    assert split_by_weights(2, {"a": Decimal(1), "b": Decimal(1), "c": Decimal(1)}) == {"a": 1, "b": 1, "c": 0}


weights_strategy = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=6).filter(
    lambda w: sum(w) > 0
)


@given(amount=st.integers(min_value=0, max_value=10**13), raw=weights_strategy)
def test_split_never_creates_or_loses_a_cent(amount: int, raw: list[int]) -> None:
    weights = {i: Decimal(w) / 1000 for i, w in enumerate(raw)}
    parts = split_by_weights(amount, weights)
    assert sum(parts.values()) == amount
    total = sum(weights.values())
    for key, part in parts.items():
        quota = Decimal(amount) * weights[key] / total
        assert abs(Decimal(part) - quota) < 1  # each part within a cent of its exact share
        assert part >= 0
