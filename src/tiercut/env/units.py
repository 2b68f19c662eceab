"""Physical quantities written with their units in environment files: ``20 Mbit/s``, ``5 ms``, ``4 GiB``.

Every physical field of an environment file belongs to one unit family
(:data:`FAMILIES`) and has a base unit, the unit a plain number is read in
(``bandwidth_bytes_per_s``: B/s, ``latency_s``: s, ``cpu_ghz``: GHz, ...).
A string gives the number with its unit; it is converted exactly (the
decimal text times the unit's scale as rational numbers, rounded once to
the nearest float), so ``5.85 Mbit/s`` is exactly the float ``731250.0`` and
``5 ms`` exactly ``0.005``.

Prefixes (SI and IEC, case matters):

- decimal: ``k`` = 1000, ``M`` = 1000^2, ``G`` = 1000^3, ``T`` = 1000^4
  (``P`` for FLOP/s too); ``K`` is refused (write ``k`` for 1000 or
  ``Ki`` for 1024);
- binary: ``Ki`` = 1024, ``Mi`` = 1024^2, ``Gi`` = 1024^3, ``Ti`` = 1024^4;
- ``b`` / ``bit`` is a bit and ``B`` a byte (8 bits): ``20 Mbit/s`` =
  ``20 Mb/s`` = ``20 Mbps`` = 2.5 MB/s.

Families and their units:

- rate (base B/s): ``B/s kB/s MB/s GB/s TB/s KiB/s MiB/s GiB/s TiB/s`` and
  bits ``bit/s kbit/s Mbit/s Gbit/s Tbit/s Kibit/s ...`` (also ``b/s``,
  ``kb/s``, ... and ``bps``, ``kbps``, ``Mbps``, ``Gbps``, ``Tbps``);
- size (base B): ``B kB MB GB TB KiB MiB GiB TiB`` and ``bit kbit ... Gibit``;
- time (base s): ``ns us µs ms s min h``;
- frequency (base Hz): ``Hz kHz MHz GHz THz`` and ``/s /min /h`` (per second, ...);
- power (base W): ``uW µW mW W kW``;
- compute rate (base FLOP/s): ``FLOP/s kFLOP/s ... PFLOP/s`` (also ``GFLOPS``, ``TFLOPS``, ...);
- price per byte (base money/B): ``/B /kB /MB /GB /TB /KiB ... /TiB``, e.g. ``0.09/GB``;
- price per time (base money/s): ``/s /min /h /day``, e.g. ``3.6/h``.

A price may start with a currency sign (``$0.09/GB``, ``€3.6/h``, ``£...``):
it is not converted; an environment's prices are all in one currency.

:func:`parse_quantity` reads a value; :func:`format_quantity` writes one in
a given unit as the shortest text that reads back to the same float;
:func:`human` writes one with a readable unit and a few digits for tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Context, Decimal
from fractions import Fraction
from typing import Any

DECIMAL_PREFIXES: dict[str, int] = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
BINARY_PREFIXES: dict[str, int] = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
PREFIX_NOTE = "k/M/G/T = 1000^n, Ki/Mi/Gi/Ti = 1024^n; b or bit = bit, B = byte (8 bits)"


@dataclass(frozen=True)
class UnitFamily:
    """A kind of physical quantity and the units it may be written in.

    Attributes:
        name: the family's name (``rate``, ``time``, ...).
        noun: how an error names it (``a rate``).
        base: the symbol of the base unit (scale 1).
        example: a value as a user writes one (``20 Mbit/s``).
        units: symbol -> how many base units one of it is (exact).
        display: the units :func:`human` picks from, smallest first.
        note: what an error adds about prefixes, or "".
        currency: a leading currency sign is allowed (prices).
    """

    name: str
    noun: str
    base: str
    example: str
    units: Mapping[str, Fraction]
    display: tuple[str, ...]
    note: str = ""
    currency: bool = False

    def scale(self, unit: str) -> Fraction:
        return self.units[unit]


def _prefixed(symbols: tuple[str, ...], prefixes: Mapping[str, int], factor: Fraction = Fraction(1)) -> dict[str, Fraction]:
    return {f"{p}{s}": Fraction(v) * factor for p, v in prefixes.items() for s in symbols}


def _rate_units() -> dict[str, Fraction]:
    units = _prefixed(("B/s",), {**DECIMAL_PREFIXES, **BINARY_PREFIXES})
    units.update(_prefixed(("bit/s", "b/s"), {**DECIMAL_PREFIXES, **BINARY_PREFIXES}, Fraction(1, 8)))
    units.update(_prefixed(("bps",), DECIMAL_PREFIXES, Fraction(1, 8)))
    return units


def _size_units() -> dict[str, Fraction]:
    units = _prefixed(("B",), {**DECIMAL_PREFIXES, **BINARY_PREFIXES})
    units.update(_prefixed(("bit", "b"), {**DECIMAL_PREFIXES, **BINARY_PREFIXES}, Fraction(1, 8)))
    return units


_TIME_UNITS = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "\u00b5s": Fraction(1, 10**6),  # MICRO SIGN
    "\u03bcs": Fraction(1, 10**6),  # GREEK SMALL LETTER MU
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
    "min": Fraction(60),
    "h": Fraction(3600),
}
_PER_TIME = {"/s": Fraction(1), "/min": Fraction(1, 60), "/h": Fraction(1, 3600)}

RATE = UnitFamily(
    "rate",
    "a rate",
    "B/s",
    "20 Mbit/s",
    _rate_units(),
    ("B/s", "kB/s", "MB/s", "GB/s", "TB/s"),
    PREFIX_NOTE,
)
SIZE = UnitFamily("size", "a size", "B", "4 GiB", _size_units(), ("B", "kB", "MB", "GB", "TB"), PREFIX_NOTE)
TIME = UnitFamily("time", "a time", "s", "5 ms", _TIME_UNITS, ("ns", "us", "ms", "s"))
FREQUENCY = UnitFamily(
    "frequency",
    "a frequency",
    "Hz",
    "1.5 GHz",
    {**_prefixed(("Hz",), DECIMAL_PREFIXES), **_PER_TIME},
    ("Hz", "kHz", "MHz", "GHz", "THz"),
)
POWER = UnitFamily(
    "power",
    "a power",
    "W",
    "250 mW",
    {"uW": Fraction(1, 10**6), "\u00b5W": Fraction(1, 10**6), "mW": Fraction(1, 1000), "W": Fraction(1), "kW": Fraction(1000)},
    ("uW", "mW", "W", "kW"),
)
COMPUTE = UnitFamily(
    "compute",
    "a compute rate",
    "FLOP/s",
    "1.3 TFLOP/s",
    {
        **_prefixed(("FLOP/s", "FLOPS"), {**DECIMAL_PREFIXES, "P": 10**15}),
    },
    ("FLOP/s", "kFLOP/s", "MFLOP/s", "GFLOP/s", "TFLOP/s", "PFLOP/s"),
    "k/M/G/T/P = 1000^n",
)
PRICE_PER_BYTE = UnitFamily(
    "price per byte",
    "a price per byte",
    "/B",
    "0.09/GB",
    {f"/{unit}": Fraction(1) / scale for unit, scale in _prefixed(("B",), {**DECIMAL_PREFIXES, **BINARY_PREFIXES}).items()},
    ("/GB",),
    PREFIX_NOTE,
    currency=True,
)
PRICE_PER_TIME = UnitFamily(
    "price per time",
    "a price per time",
    "/s",
    "3.6/h",
    {"/s": Fraction(1), "/min": Fraction(1, 60), "/h": Fraction(1, 3600), "/day": Fraction(1, 86400)},
    ("/h",),
    currency=True,
)

#: every family, in the order an ambiguous unit is attributed for an error message
FAMILIES: tuple[UnitFamily, ...] = (RATE, SIZE, TIME, FREQUENCY, POWER, COMPUTE, PRICE_PER_BYTE, PRICE_PER_TIME)

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_QUANTITY = re.compile(rf"^\s*(?P<currency>[$€£])?\s*(?P<number>{_NUMBER})\s*(?P<unit>.*?)\s*$")
#: what a quantity's text looks like (for JSON Schema): an optional currency sign, a number, a unit
QUANTITY_PATTERN = rf"^\s*[$€£]?\s*{_NUMBER}(\s*\S.*)?$"
#: decimal exponents beyond this are refused before they are expanded into exact integers
MAX_EXPONENT = 400


@dataclass(frozen=True)
class FieldUnit:
    """How one field of an environment file is read: its family and the unit a plain number is in."""

    family: UnitFamily
    unit: str

    def __post_init__(self) -> None:
        self.family.scale(self.unit)  # a unit of that family

    @property
    def plain(self) -> str:
        """What a plain number is in, for messages: ``B/s``, ``money/B``."""
        return f"money{self.unit}" if self.family.currency else self.unit

    def parse(self, value: Any, field_name: str = "") -> float:
        """``value`` (a number in :attr:`unit`, or text with a unit) as a float in :attr:`unit`."""
        return parse_quantity(value, self, field_name)


def _family_of(unit: str) -> UnitFamily | None:
    return next((f for f in FAMILIES if unit in f.units), None)


def _refusal(text: str, unit: str, field: FieldUnit) -> str:
    family = field.family
    note = f"; {family.note}" if family.note else ""
    expected = f"expected {family.noun} like '{family.example}' (a plain number is {field.plain}{note})"
    other = _family_of(unit)
    if other is not None:
        return f"{text!r} is {other.noun}, {expected}"
    hint = ""
    if unit[:1] == "K" and unit[1:2] != "i":
        hint = "; write k for 1000 or Ki for 1024"
    return f"unknown unit {unit!r} in {text!r}, {expected}{hint}"


def parse_quantity(value: Any, field: FieldUnit, field_name: str = "") -> float:
    """A number (already in ``field.unit``) or a string with a unit -> a float in ``field.unit``.

    Raises ``ValueError`` with one line (led by ``field_name``, if given)
    saying what was found and what is expected (the family's example; the
    prefix rules where they matter). Range checks (> 0, finite) are the caller's.
    """
    family = field.family
    lead = f"{field_name}: " if field_name else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(
            f"{lead}expected a number ({field.plain}) or {family.noun} like '{family.example}', got {type(value).__name__}"
        )
    if not isinstance(value, str):
        return float(value)
    match = _QUANTITY.match(value)
    if match is None:
        raise ValueError(f"{lead}{value!r} is not a number with a unit; write {family.noun} like '{family.example}'")
    unit = match["unit"].replace(" ", "")
    exponent = match["number"].lower().partition("e")[2]
    if exponent and abs(int(exponent)) > MAX_EXPONENT:
        raise ValueError(f"{lead}{value!r} is out of range; write {family.noun} like '{family.example}'")
    if match["currency"] and not family.currency:
        raise ValueError(f"{lead}{value!r} has a currency sign, expected {family.noun} like '{family.example}'")
    if not unit:
        scale = Fraction(1)
    elif unit in family.units:
        scale = family.scale(unit) / family.scale(field.unit)
    else:
        raise ValueError(lead + _refusal(value, unit, field))
    return _to_float(Fraction(match["number"]) * scale)


def _to_float(exact: Fraction) -> float:
    try:
        return float(exact)
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def _decimal_text(exact: Fraction, digits: int) -> str:
    """``exact`` rounded to ``digits`` significant digits, as plain or scientific decimal text."""
    context = Context(prec=digits)
    number = context.divide(Decimal(exact.numerator), Decimal(exact.denominator))
    if number == 0:
        return "0"
    exponent = number.adjusted()
    if -4 <= exponent < 15:
        text = format(number, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    mantissa, _, power = format(number, "e").partition("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(power)}"


def format_quantity(value: float, family: UnitFamily, unit: str, *, base_unit: str | None = None) -> str:
    """``value`` (in ``base_unit``, default the family's base) written in ``unit``.

    The shortest decimal text that :func:`parse_quantity` reads back to
    exactly ``value``: ``format_quantity(731250.0, RATE, "Mbit/s")`` is
    ``"5.85 Mbit/s"``.
    """
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite quantity")
    scale = family.scale(unit) / family.scale(base_unit or family.base)
    exact = Fraction(value) / scale
    field = FieldUnit(family, base_unit or family.base)
    for digits in range(1, 17):
        written = _join(_decimal_text(exact, digits), unit)
        if parse_quantity(written, field) == value:
            return written
    return _join(_decimal_text(exact, 17), unit)  # 17 significant digits always read back exactly


def _join(number: str, unit: str) -> str:
    return f"{number}{unit}" if unit.startswith("/") else f"{number} {unit}"


def human(value: float, family: UnitFamily, *, unit: str | None = None, digits: int = 4, base_unit: str | None = None) -> str:
    """``value`` (in ``base_unit``, default the family's base) with a readable unit and ``digits`` significant digits.

    ``unit``: that unit's family of display units is used as is (e.g.
    ``"bit/s"`` gives bit rates ``kbit/s``, ``Mbit/s``, ...). For tables,
    not for reading back (see :func:`format_quantity`).
    """
    if not math.isfinite(value):
        return f"{value} {family.base}"
    base_value = Fraction(value) * family.scale(base_unit or family.base)
    prefixed = (f"{p}{unit}" for p in DECIMAL_PREFIXES)
    choices = family.display if unit is None else tuple(u for u in prefixed if u in family.units)
    chosen = choices[0]
    for candidate in choices:
        if abs(base_value) >= family.scale(candidate):
            chosen = candidate
    shown = base_value / family.scale(chosen)
    return _join(_decimal_text(shown, digits), chosen)


__all__ = [
    "BINARY_PREFIXES",
    "COMPUTE",
    "DECIMAL_PREFIXES",
    "FAMILIES",
    "FREQUENCY",
    "POWER",
    "PREFIX_NOTE",
    "PRICE_PER_BYTE",
    "PRICE_PER_TIME",
    "QUANTITY_PATTERN",
    "RATE",
    "SIZE",
    "TIME",
    "FieldUnit",
    "UnitFamily",
    "format_quantity",
    "human",
    "parse_quantity",
]
