from __future__ import annotations

from decimal import Decimal

import pytest

from flashlink.kube import format_cpu, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", Decimal(1)),
        ("500m", Decimal("0.5")),
        ("0.25", Decimal("0.25")),
        ("100Mi", Decimal(100 * 1024**2)),
        ("4Gi", Decimal(4 * 1024**3)),
        ("1G", Decimal(10**9)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("1.5E-3", Decimal("0.0015")),
        ("+2", Decimal(2)),
        (".5", Decimal("0.5")),
        ("250u", Decimal("0.00025")),
    ],
)
def test_parse(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Gb", "1 Gi", "--1", "1.2.3", "Gi"])
def test_invalid_quantities_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity; expected"):
        parse_quantity(text)


@pytest.mark.parametrize(("cores", "text"), [("2", "2"), ("0.5", "500m"), ("1.0001", "1001m")])
def test_format_cpu(cores: str, text: str) -> None:
    assert format_cpu(Decimal(cores)) == text
