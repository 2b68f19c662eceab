"""Validation of environment files (YAML or JSON) with pydantic v2.

The authoring form of an environment file::

    schema_version: 1            # optional, 1 is the only version
    name: three-tier
    description: one end device, one edge server, one cloud
    sources: ["where the figures come from"]
    devices:
      - name: phone
        tier: end                # end | edge | cloud
        spec: jetson-tx2         # a catalog entry, or explicit figures:
        # spec: {peak_flops: 1.0e12, memory_bandwidth_bps: 2.5e10}
        # spec: {cpu_ghz: 2.3}   (the migration seed's CPU capacity)
        # spec: {catalog: my-devices.yaml, entry: my_board}  (tiercut devices calibrate)
        precision: fp16          # optional: fp32 | fp16 | int8 (catalog devices)
        # (no spec: this host)
        memory_bytes: 4.0e9      # optional, default unlimited
        power_compute_w: 5.0     # optional powers, default: the catalog's, else 0
        power_tx_w: 1.8
        power_rx_w: 1.0
        power_idle_w: 0.3
        price_per_s: 0.0
    links:
      - {a: phone, b: edge, bandwidth_bytes_per_s: 1.25e6, latency_s: 0.01}
      - {a: phone, b: cloud, up: 731250, down: 1.6e6}   # up: phone -> cloud, down: cloud -> phone
      - {tiers: [edge, cloud], bandwidth_bytes_per_s: 5.0e5}   # every edge-cloud pair
    users:
      - {name: alice, device: phone, model: vgg16, query_rate_hz: 1.0}

Rates are BYTES per second. A link is symmetric unless it gives its
``b -> a`` figures: ``up`` is the ``a -> b`` bandwidth (for a tier pair, from
the first tier's device to the second's) and ``down`` the ``b -> a`` one;
``latency_s_ba`` and ``price_per_byte_ba`` likewise (see :class:`LinkModel`).
Numbers only here: :func:`parse_bandwidth` is the one place a rate is read.
The older field ``bandwidth_bps`` (also bytes per second) is read with a
:class:`~tiercut.env.types.LegacyFieldWarning`. A tier-pair link expands to one link
per device pair of those tiers (for one tier twice: every pair of distinct
devices of that tier); a link naming the two devices explicitly wins over
an expanded one. Every mistake becomes a one-line :class:`TiercutError`
naming the field and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tiercut.env.types import (
    SCHEMA_VERSION,
    TIERS,
    CatalogRef,
    Device,
    DeviceSpeed,
    Environment,
    Link,
    User,
    warn_legacy_bandwidth,
)
from tiercut.errors import TiercutError

Tier = Literal["end", "edge", "cloud"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SpeedModel(_Strict):
    peak_flops: float | None = Field(default=None, gt=0)
    memory_bandwidth_bps: float | None = Field(default=None, gt=0)
    cpu_ghz: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_speed(self) -> SpeedModel:
        if self.peak_flops is None and self.cpu_ghz is None:
            raise ValueError("explicit speed needs peak_flops (with memory_bandwidth_bps) or cpu_ghz")
        if self.peak_flops is not None and self.cpu_ghz is not None:
            raise ValueError("give peak_flops or cpu_ghz, not both")
        if self.peak_flops is not None and self.memory_bandwidth_bps is None:
            raise ValueError("peak_flops needs memory_bandwidth_bps too (bytes per second)")
        if self.cpu_ghz is not None and self.memory_bandwidth_bps is not None:
            raise ValueError("cpu_ghz scales the host's memory bandwidth itself; drop memory_bandwidth_bps")
        return self


class CatalogRefModel(_Strict):
    catalog: str = Field(min_length=1)
    entry: str = Field(min_length=1)


class DeviceModel(_Strict):
    name: str = Field(min_length=1)
    tier: Tier
    spec: Any = None
    precision: Literal["fp32", "fp16", "int8"] | None = None
    memory_bytes: float | None = Field(default=None, ge=0)
    power_compute_w: float | None = Field(default=None, ge=0)
    power_tx_w: float | None = Field(default=None, ge=0)
    power_rx_w: float | None = Field(default=None, ge=0)
    power_idle_w: float | None = Field(default=None, ge=0)
    price_per_s: float = Field(default=0.0, ge=0)

    @field_validator("spec", mode="before")
    @classmethod
    def _spec(cls, value: Any) -> str | SpeedModel | CatalogRefModel | None:
        if value is None or isinstance(value, (SpeedModel, CatalogRefModel)):
            return value
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("spec is empty; name a catalog entry or give peak_flops/cpu_ghz")
            return value
        if isinstance(value, Mapping) and ("catalog" in value or "entry" in value):
            try:
                return CatalogRefModel.model_validate(dict(value))
            except ValidationError as exc:
                raise ValueError("a catalog spec needs catalog (a YAML file) and entry (a device in it): "
                                 + _first_error(exc)) from None
        if isinstance(value, Mapping):
            try:
                return SpeedModel.model_validate(dict(value))
            except ValidationError as exc:
                raise ValueError(_first_error(exc)) from None
        raise ValueError(
            "spec must be a catalog entry name, {catalog: FILE, entry: NAME}, or a mapping with "
            "peak_flops/memory_bandwidth_bps or cpu_ghz"
        )


def parse_bandwidth(value: Any, where: str) -> float:
    """A link rate in BYTES per second from an environment file: the one place rates are parsed.

    A number (int or float, > 0 and finite) is bytes per second, and so is
    the text of one (YAML reads ``1.0e6`` without an exponent sign as text).
    ``where`` names the field for the error message.
    """
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(
                f"{where} is the text {value!r}; give bytes per second as a number (e.g. 731250 for 5.85 Mbit/s)"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number of bytes per second, got {type(value).__name__}")
    rate = float(value)
    if not (rate > 0 and math.isfinite(rate)):
        raise ValueError(f"{where} is {value!r}; a bandwidth must be a finite number of bytes per second > 0")
    return rate


class LinkModel(_Strict):
    """One entry of ``links:``.

    Rates are BYTES per second. Either ``bandwidth_bytes_per_s`` (both
    directions, or ``a -> b`` when ``bandwidth_bytes_per_s_ba`` gives
    ``b -> a``), or ``up`` (``a -> b``; for ``tiers: [t1, t2]``, from the
    ``t1`` device to the ``t2`` device) with an optional ``down`` (the other
    way; default: as ``up``). ``latency_s_ba`` and ``price_per_byte_ba`` give
    the ``b -> a`` latency and price (default: as ``a -> b``). The old field
    ``bandwidth_bps`` (bytes per second too) is read with a warning.
    """

    a: str | None = None
    b: str | None = None
    tiers: tuple[Tier, Tier] | None = None
    bandwidth_bytes_per_s: Any = None
    bandwidth_bps: Any = None
    up: Any = None
    down: Any = None
    bandwidth_bytes_per_s_ba: Any = None
    latency_s: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    price_per_byte: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    latency_s_ba: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    price_per_byte_ba: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _pair_or_tiers(self) -> LinkModel:
        explicit = self.a is not None or self.b is not None
        if explicit and self.tiers is not None:
            raise ValueError("give either a/b (two devices) or tiers (two tiers), not both")
        if not explicit and self.tiers is None:
            raise ValueError("a link needs a and b (device names) or tiers: [tier, tier]")
        if explicit and (self.a is None or self.b is None):
            raise ValueError("a link needs both a and b")
        if explicit and self.a == self.b:
            raise ValueError(f"link from {self.a!r} to itself; a device needs no link to itself")
        forward = [k for k in ("bandwidth_bytes_per_s", "bandwidth_bps", "up") if getattr(self, k) is not None]
        if not forward:
            raise ValueError("a link needs a rate: bandwidth_bytes_per_s (bytes per second), or up (and down)")
        if len(forward) > 1:
            raise ValueError(f"give one of {' / '.join(forward)}, not several (up is the a -> b bandwidth)")
        if self.down is not None and self.bandwidth_bytes_per_s_ba is not None:
            raise ValueError("give down or bandwidth_bytes_per_s_ba (both are the b -> a bandwidth), not both")
        for key in (*forward, "down", "bandwidth_bytes_per_s_ba"):
            value = getattr(self, key)
            if value is not None:
                parse_bandwidth(value, key)
        if self.tiers is not None and self.tiers[0] == self.tiers[1] and self.directional_figures():
            raise ValueError(
                f"a link within tier {self.tiers[0]!r} has no up or down direction; "
                "give its two devices (a, b) for a directional link"
            )
        return self

    def rate_ab(self) -> float:
        value = next(getattr(self, k) for k in ("bandwidth_bytes_per_s", "bandwidth_bps", "up") if getattr(self, k) is not None)
        return parse_bandwidth(value, "bandwidth")

    def rate_ba(self) -> float | None:
        value = self.down if self.down is not None else self.bandwidth_bytes_per_s_ba
        return None if value is None else parse_bandwidth(value, "down")

    def directional_figures(self) -> bool:
        return any(v is not None for v in (self.down, self.bandwidth_bytes_per_s_ba, self.latency_s_ba, self.price_per_byte_ba))

    def link(self, a: str, b: str) -> Link:
        """The :class:`Link` from ``a`` (the up side) to ``b``."""
        return Link(
            a,
            b,
            self.rate_ab(),
            self.latency_s,
            self.price_per_byte,
            bandwidth_bytes_per_s_ba=self.rate_ba(),
            latency_s_ba=self.latency_s_ba,
            price_per_byte_ba=self.price_per_byte_ba,
        )


class UserModel(_Strict):
    name: str = Field(min_length=1)
    device: str = Field(min_length=1)
    model: str = Field(min_length=1)
    query_rate_hz: float = Field(default=1.0, gt=0)
    input_shape: tuple[int, ...] | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        """Data only: a zoo name or an .onnx / graph JSON path (a package.module:factory is run only with --allow-code)."""
        from tiercut.graph.models import ZOO, is_factory_spec

        if value in ZOO or value.lower().endswith((".onnx", ".json")) or is_factory_spec(value):
            return value
        raise ValueError(f"model {value!r} is not a zoo model ({', '.join(ZOO)}), an .onnx file or a graph JSON file")

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        from tiercut.graph.models import check_input_shape

        if value is not None:
            try:
                check_input_shape(value, str(list(value)))
            except TiercutError as exc:
                raise ValueError(str(exc)) from None
        return value


class EnvironmentModel(_Strict):
    schema_version: int = SCHEMA_VERSION
    name: str = ""
    description: str = ""
    sources: tuple[str, ...] = ()
    devices: tuple[DeviceModel, ...] = Field(min_length=1)
    links: tuple[LinkModel, ...] = ()
    users: tuple[UserModel, ...] = ()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    shown = f" (got {value!r:.60})" if not isinstance(value, Mapping) and err["type"] != "missing" else ""
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"


def environment_from_mapping(data: Any, *, name: str | None = None, base_dir: Any = None) -> Environment:
    """Validate a parsed environment file and build the :class:`Environment`.

    ``base_dir``: the folder relative catalog paths (``spec: {catalog: ...}``) are resolved against.
    """
    label = name or (data.get("name") if isinstance(data, Mapping) else None) or "environment"
    if not isinstance(data, Mapping):
        raise TiercutError(f"environment {label!r} must be a mapping with devices/links/users, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise TiercutError(
            f"environment {label!r} has schema_version {version!r}; this tiercut reads {SCHEMA_VERSION}"
        )
    try:
        model = EnvironmentModel.model_validate(dict(data))
    except ValidationError as exc:
        raise TiercutError(f"environment {label!r}: {_first_error(exc)}; fix the file") from None
    env_name = name or model.name or "environment"
    for i, spec_link in enumerate(model.links):
        if spec_link.bandwidth_bps is not None:
            warn_legacy_bandwidth(f"environment {env_name!r}: links.{i}")

    devices: list[Device] = []
    seen: set[str] = set()
    for d in model.devices:
        if d.name in seen:
            raise TiercutError(f"environment {env_name!r} has two devices named {d.name!r}; rename one")
        seen.add(d.name)
        spec: str | DeviceSpeed | CatalogRef | None
        if isinstance(d.spec, CatalogRefModel):
            from pathlib import Path

            path = Path(d.spec.catalog)
            if not path.is_absolute() and base_dir is not None:
                path = Path(base_dir) / path
            spec = CatalogRef(catalog=str(path), entry=d.spec.entry)
        elif isinstance(d.spec, SpeedModel):
            spec = DeviceSpeed(
                peak_flops=d.spec.peak_flops,
                memory_bandwidth_bps=d.spec.memory_bandwidth_bps,
                cpu_ghz=d.spec.cpu_ghz,
            )
        else:
            spec = d.spec
        devices.append(
            Device(
                name=d.name,
                tier=d.tier,
                spec=spec,
                memory_bytes=None if d.memory_bytes is None else int(d.memory_bytes),
                power_compute_w=d.power_compute_w,
                power_tx_w=d.power_tx_w,
                power_rx_w=d.power_rx_w,
                power_idle_w=d.power_idle_w,
                price_per_s=d.price_per_s,
                precision=d.precision,
            )
        )

    by_tier: dict[str, list[str]] = {t: [d.name for d in devices if d.tier == t] for t in TIERS}
    expanded: dict[frozenset[str], Link] = {}
    explicit: dict[frozenset[str], Link] = {}
    for i, spec_link in enumerate(model.links):
        if spec_link.tiers is not None:
            t1, t2 = spec_link.tiers
            if not by_tier[t1] or not by_tier[t2]:
                empty = t1 if not by_tier[t1] else t2
                raise TiercutError(
                    f"environment {env_name!r}: links.{i} joins tier {empty!r}, which has no device; "
                    "add a device of that tier or drop the link"
                )
            pairs = (
                [(x, y) for j, x in enumerate(by_tier[t1]) for y in by_tier[t1][j + 1 :]]
                if t1 == t2
                else [(x, y) for x in by_tier[t1] for y in by_tier[t2]]
            )
            for x, y in pairs:
                expanded[frozenset((x, y))] = spec_link.link(x, y)
        else:
            a, b = str(spec_link.a), str(spec_link.b)
            for end in (a, b):
                if end not in seen:
                    raise TiercutError(
                        f"environment {env_name!r}: links.{i} names unknown device {end!r}; "
                        f"devices are {', '.join(d.name for d in devices)}"
                    )
            key = frozenset((a, b))
            if key in explicit:
                raise TiercutError(f"environment {env_name!r} has two links between {a!r} and {b!r}; keep one")
            explicit[key] = spec_link.link(a, b)
    merged = {**expanded, **explicit}
    order = {d.name: i for i, d in enumerate(devices)}
    links = sorted(
        merged.values(),
        key=lambda link: tuple(sorted((order[link.a], order[link.b]))),
    )

    users: list[User] = []
    user_names: set[str] = set()
    for u in model.users:
        if u.name in user_names:
            raise TiercutError(f"environment {env_name!r} has two users named {u.name!r}; rename one")
        user_names.add(u.name)
        if u.device not in seen:
            raise TiercutError(
                f"environment {env_name!r}: user {u.name!r} is on unknown device {u.device!r}; "
                f"devices are {', '.join(d.name for d in devices)}"
            )
        users.append(User(u.name, u.device, u.model, u.query_rate_hz, u.input_shape))

    return Environment(
        name=env_name,
        devices=tuple(devices),
        links=tuple(links),
        users=tuple(users),
        description=model.description,
        sources=model.sources,
    )
