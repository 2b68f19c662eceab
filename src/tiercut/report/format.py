"""Figures for people: seconds, bytes, FLOPs and rates with a unit prefix; colours per device."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

_PREFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""))


def seconds(value: float | None) -> str:
    """``0.0123`` -> ``"12.3 ms"``; None/NaN -> ``"-"``; inf -> ``"inf"``."""
    if value is None or value != value:
        return "-"
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f} s"
    if magnitude >= 1 or value == 0:
        return f"{value:.3g} s"
    if magnitude >= 1e-3:
        return f"{value * 1e3:.3g} ms"
    if magnitude >= 1e-6:
        return f"{value * 1e6:.3g} µs"
    return f"{value * 1e9:.3g} ns"


def _scaled(value: float | None, unit: str) -> str:
    if value is None or value != value:
        return "-"
    if math.isinf(value):
        return "inf"
    for scale, prefix in _PREFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def size(nbytes: float | None) -> str:
    """Bytes with a decimal prefix (``3.21 MB``)."""
    return _scaled(nbytes, "B")


def flops(value: float) -> str:
    """FLOPs with a decimal prefix (``1.5 GFLOPs``)."""
    return _scaled(value, "FLOPs")


def rate(bytes_per_s: float | None) -> str:
    """A link rate both ways people write it: ``2.36 MB/s (18.9 Mbit/s)``."""
    if bytes_per_s is None or bytes_per_s != bytes_per_s:
        return "-"
    return f"{_scaled(bytes_per_s, 'B/s')} ({_scaled(bytes_per_s * 8, 'bit/s')})"


def number(value: float | None, digits: int = 4) -> str:
    if value is None or value != value:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}g}"


#: a hue per tier: end devices green, edge servers orange, cloud servers blue, anything else purple.
TIER_HUES = {"end": 0.36, "edge": 0.08, "cloud": 0.60}
OTHER_HUE = 0.80


def _hex(h: float, lightness: float, saturation: float) -> str:
    r, g, b = colorsys.hls_to_rgb(h % 1.0, lightness, saturation)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def device_colours(devices: Sequence[tuple[str, str]]) -> dict[str, str]:
    """device name -> fill colour, for ``(name, tier)`` pairs in problem order.

    Devices of one tier share a hue (so a glance tells the tier) and step
    through lightness and a little hue so that neighbours differ.
    """
    by_tier: dict[str, list[str]] = {}
    for name, tier in devices:
        by_tier.setdefault(tier, []).append(name)
    out: dict[str, str] = {}
    for tier, names in by_tier.items():
        hue = TIER_HUES.get(tier, OTHER_HUE)
        n = len(names)
        for i, name in enumerate(names):
            t = i / (n - 1) if n > 1 else 0.5
            out[name] = _hex(hue + (t - 0.5) * 0.07, 0.42 + 0.26 * t, 0.62)
    return out


#: colours of chart series (Okabe and Ito's colour-blind safe palette, 2008).
SERIES_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")


__all__ = ["SERIES_COLOURS", "TIER_HUES", "device_colours", "flops", "number", "rate", "seconds", "size"]
