"""serde_json / Ryu float layout for f64 and f32."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3store._floatfmt import format_f32, format_f64, round_f32

_SETTINGS = settings(max_examples=200, deadline=None)
_SCI = re.compile(r"^-?[1-9](\.[0-9]*[1-9])?e-?[1-9][0-9]*$")
_DEC = re.compile(r"^-?[0-9]+\.[0-9]+$")


def _digits_and_kk(text: str) -> tuple[str, int]:
    """Significant digits and decimal-point position of a decimal or scientific number."""
    text = text.lstrip("-")
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = (whole + frac).lstrip("0")
    leading_zeros = len(whole + frac) - len((whole + frac).lstrip("0"))
    kk = len(whole) - leading_zeros + (int(exp) if exp else 0)
    return digits.rstrip("0"), kk


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (3.0, "3.0"),
        (1e-6, "1e-6"),
        (1e-5, "0.00001"),
        (1.234e-5, "0.00001234"),
        (9.99e-6, "9.99e-6"),
        (1.5e16, "1.5e16"),
        (1e16, "1e16"),
        (9999999999999998.0, "9999999999999998.0"),
        (1e15, "1000000000000000.0"),
        (1e21, "1e21"),
        (0.00651, "0.00651"),
        (123.456, "123.456"),
        (-2.5e-300, "-2.5e-300"),
        (1.7976931348623157e308, "1.7976931348623157e308"),
        (5e-324, "5e-324"),
        (math.nan, "null"),
        (math.inf, "null"),
        (-math.inf, "null"),
    ],
)
def test_f64_examples(value: float, expected: str) -> None:
    assert format_f64(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (0.1, "0.1"),
        (0.8, "0.8"),
        (0.72, "0.72"),
        (0.00617, "0.00617"),
        (1 / 3, "0.33333334"),
        (0.1 + 0.2, "0.3"),
        (1e-6, "0.000001"),
        (9.99e-7, "9.99e-7"),
        (1e13, "1e13"),
        (9.999e12, "9999000000000.0"),
        (16777217.0, "16777216.0"),
        (3.4028235e38, "3.4028235e38"),
        (1e39, "null"),
        (1e-46, "0.0"),
        (math.nan, "null"),
    ],
)
def test_f32_examples(value: float, expected: str) -> None:
    assert format_f32(value) == expected


def test_int_in_f64_field_is_written_as_float() -> None:
    value: Any = 3  # an int assigned to a float field at runtime
    assert format_f64(value) == "3.0"


@_SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_f64_shortest_digits_and_layout(x: float) -> None:
    text = format_f64(x)
    assert float(text) == x
    assert math.copysign(1.0, float(text)) == math.copysign(1.0, x)
    # Same shortest digits as Python's repr.
    assert _digits_and_kk(text) == _digits_and_kk(repr(x)) or x == 0.0
    ax = abs(x)
    if x == 0.0:
        assert text in ("0.0", "-0.0")
    elif 1e-5 <= ax < 1e16:
        assert _DEC.match(text), text
    else:
        assert _SCI.match(text), text
    assert "+" not in text
    assert "e0" not in text
    assert "e-0" not in text


@_SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_f32_shortest_digits_and_layout(x: float) -> None:
    text = format_f32(x)
    f = np.float32(x)
    assert np.float32(float(text)) == f
    if x == 0.0:
        assert text in ("0.0", "-0.0")
        return
    oracle = np.format_float_scientific(f, unique=True)
    assert _digits_and_kk(text) == _digits_and_kk(oracle)
    ax = abs(x)
    if 1e-6 <= ax < 1e13:
        assert _DEC.match(text), text
    else:
        assert _SCI.match(text), text


@_SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-3e38, max_value=3e38))
def test_f32_rounds_f64_input_first(x: float) -> None:
    rounded = round_f32(x)
    assert rounded == float(np.float32(x))
    assert format_f32(x) == format_f32(rounded)
