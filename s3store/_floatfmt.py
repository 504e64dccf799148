"""Float text exactly as serde_json writes it (Ryu's ``format64`` / ``format32`` layout).

serde_json prints finite floats with the shortest digits that round-trip (for ``f32``: that
round-trip *as f32*) and lays them out like this, where ``kk`` is the position of the decimal
point relative to the digits (``value = 0.DIGITS × 10^kk``) and ``k = kk - len(DIGITS)``:

========================  ===================  =====================
condition (f64 / f32)     layout               example
========================  ===================  =====================
``k >= 0, kk <= 16/13``   digits, zeros, .0    ``1e15`` → ``1000000000000000.0``
``0 < kk <= 16/13``       point inside         ``12.34``
``-5/-6 < kk <= 0``       ``0.`` zeros digits  ``0.00001234``
otherwise                 scientific           ``1e-6``, ``1.5e16``, ``1e21``
========================  ===================  =====================

So f64 is decimal while ``1e-5 <= |x| < 1e16`` and f32 while ``1e-6 <= |x| < 1e13``; the
exponent has a bare ``e``, no ``+`` and no zero padding. Zero is ``0.0`` (``-0.0`` keeps its
sign) and NaN/±inf become ``null`` (serde_json's ``Value``/struct serialisation of non-finite
floats).

f64 digits come from ``float.__repr__`` (shortest round-trip, closest to the value — the same
digits Ryu picks). f32 digits are computed here exactly with rational arithmetic because
Python has no f32-shortest printer.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

__all__ = ["format_f32", "format_f64", "round_f32"]

_F32 = struct.Struct("<f")
_U32 = struct.Struct("<I")
_F64_MAX_KK = 16
_F64_MIN_KK = -5
_F32_MAX_KK = 13
_F32_MIN_KK = -6


def _layout(negative: bool, digits: str, kk: int, max_kk: int, min_kk: int) -> str:
    n = len(digits)
    k = kk - n
    if k >= 0 and kk <= max_kk:
        text = digits + "0" * k + ".0"
    elif 0 < kk <= max_kk:
        text = digits[:kk] + "." + digits[kk:]
    elif min_kk < kk <= 0:
        text = "0." + "0" * -kk + digits
    elif n == 1:
        text = digits + "e" + str(kk - 1)
    else:
        text = digits[0] + "." + digits[1:] + "e" + str(kk - 1)
    return "-" + text if negative else text


def format_f64(x: float) -> str:
    """serde_json text of an ``f64`` (``null`` for NaN and infinities)."""
    if type(x) is not float:
        x = float(x)  # an int assigned to an f64 field is still written as a float
    if x - x != 0.0:  # NaN or ±inf: inf - inf is NaN, and NaN compares unequal to anything
        return "null"
    text = float.__repr__(x)
    if "e" not in text:
        # repr is plain decimal only for 1e-4 <= |x| < 1e16, a sub-range of Ryu's decimal
        # range in which both print identical text ("0.001", "123.0", "-0.0").
        return text
    mantissa, _, exponent = text.partition("e")
    negative = mantissa[0] == "-"
    if negative:
        mantissa = mantissa[1:]
    digits = mantissa.replace(".", "")
    return _layout(negative, digits, int(exponent) + 1, _F64_MAX_KK, _F64_MIN_KK)


def round_f32(x: float) -> float:
    """``x`` rounded to the nearest f32 (round-half-even), as Rust's ``x as f32`` does.

    Values beyond the f32 range become ±inf.
    """
    try:
        return float(_F32.unpack(_F32.pack(x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def format_f32(x: float) -> str:
    """serde_json text of an ``f32`` holding ``x`` rounded to f32 (``null`` if not finite)."""
    v = round_f32(x)
    if v - v != 0.0:
        return "null"
    if v == 0.0:
        return "-0.0" if math.copysign(1.0, v) < 0 else "0.0"
    digits, kk = _shortest_f32(abs(v))
    return _layout(v < 0, digits, kk, _F32_MAX_KK, _F32_MIN_KK)


@lru_cache(maxsize=4096)
def _shortest_f32(v: float) -> tuple[str, int]:
    """Shortest decimal digits that round (as f32) to the positive f32 value ``v``.

    Among the shortest candidates the one nearest to ``v`` wins (ties to an even last digit),
    which is what Ryu and Dragon4 produce. Returns ``(digits, kk)`` with
    ``v ≈ 0.digits × 10^kk``.
    """
    bits = _U32.unpack(_F32.pack(v))[0]
    biased = (bits >> 23) & 0xFF
    fraction = bits & 0x7FFFFF
    if biased == 0:
        mantissa, exponent = fraction, -149
    else:
        mantissa, exponent = fraction | 0x800000, biased - 150
    exact = Fraction(mantissa) * Fraction(2) ** exponent
    half_ulp = Fraction(2) ** exponent / 2
    # Just above a power of two the gap to the next lower f32 is half as wide.
    lower_half = half_ulp / 2 if fraction == 0 and biased > 1 else half_ulp
    low, high = exact - lower_half, exact + half_ulp
    inclusive = mantissa % 2 == 0  # round-half-even: an even mantissa wins ties on its bounds
    magnitude = Decimal(v).adjusted()  # floor(log10(v)), exact for a binary float
    for precision in range(1, 10):
        q = magnitude - precision + 1
        scale = Fraction(10) ** q
        floor_digits = math.floor(exact / scale)
        best: int | None = None
        best_distance = Fraction(0)
        for candidate in (floor_digits, floor_digits + 1):
            value = candidate * scale
            inside = low <= value <= high if inclusive else low < value < high
            if not inside:
                continue
            distance = abs(value - exact)
            if (
                best is None
                or distance < best_distance
                or (distance == best_distance and candidate % 2 == 0)
            ):
                best, best_distance = candidate, distance
        if best is not None:
            text = str(best)
            return text.rstrip("0"), q + len(text)
    raise AssertionError(f"no f32 representation found for {v!r}")  # pragma: no cover
