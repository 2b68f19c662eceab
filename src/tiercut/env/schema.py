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
        # spec: {peak_flops: 1.3 TFLOP/s, memory_bandwidth_bps: 25 GB/s}
        # spec: {cpu_ghz: 2.3 GHz}   (the migration seed's CPU capacity)
        # spec: {catalog: my-devices.yaml, entry: my_board}  (tiercut devices calibrate)
        precision: fp16          # optional: fp32 | fp16 | int8 (catalog devices)
        # (no spec: this host)
        memory: 4 GB             # optional (or memory_bytes: 4.0e9), default unlimited
        power_compute_w: 5 W     # optional powers, default: the catalog's, else 0
        power_tx_w: 1.8
        power_rx_w: 1000 mW
        power_idle_w: 0.3
        price_per_s: $0.36/h     # money per second (or per the unit given)
    links:
      - {a: phone, b: edge, bandwidth: 10 Mbit/s, latency: 10 ms}
      - {a: phone, b: cloud, up: 5.85 Mbit/s, down: 13 Mbit/s}   # up: phone -> cloud, down: cloud -> phone
      - {tiers: [edge, cloud], bandwidth_bytes_per_s: 5.0e5, price: $0.09/GB}   # every edge-cloud pair
    users:
      - {name: alice, device: phone, model: vgg16, query_rate_hz: 1 Hz}

Every physical figure is a plain number in the unit its field names
(``bandwidth_bytes_per_s``, ``up``, ``down``: BYTES per second; ``latency_s``:
seconds; ``memory_bytes``: bytes; ``power_*_w``: watts; ``cpu_ghz``: GHz;
``peak_flops``: FLOP/s; ``query_rate_hz``: Hz; ``price_per_byte``,
``price_per_s``: money per byte, per second), or text with a unit of its
family (:mod:`tiercut.env.units`: ``20 Mbit/s``, ``2.5 MB/s``, ``5 ms``,
``4 GiB``, ``250 mW``, ``1.5 GHz``, ``0.09/GB``; k/M/G = 1000, Ki/Mi/Gi =
1024, b = bit, B = byte). A unit of another family is an error naming both
(``bandwidth: '20 ms' is a time, expected a rate like '20 Mbit/s'``).
Links take short names: ``bandwidth``, ``latency``, ``price`` (and
``_ba``); devices ``memory``.

A link is symmetric unless it gives its ``b -> a`` figures: ``up`` is the
``a -> b`` bandwidth (for a tier pair, from the first tier's device to the
second's) and ``down`` the ``b -> a`` one; ``latency_s_ba`` and
``price_per_byte_ba`` likewise (see :class:`LinkModel`).
:func:`parse_bandwidth` is the one place a rate is read.
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
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

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
from tiercut.env.units import (
    COMPUTE,
    FREQUENCY,
    POWER,
    PRICE_PER_BYTE,
    PRICE_PER_TIME,
    QUANTITY_PATTERN,
    RATE,
    SIZE,
    TIME,
    FieldUnit,
)
from tiercut.errors import TiercutError

Tier = Literal["end", "edge", "cloud"]

BYTES_PER_S = FieldUnit(RATE, "B/s")
SECONDS = FieldUnit(TIME, "s")
BYTES = FieldUnit(SIZE, "B")
WATTS = FieldUnit(POWER, "W")
FLOP_PER_S = FieldUnit(COMPUTE, "FLOP/s")
GHZ = FieldUnit(FREQUENCY, "GHz")
HZ = FieldUnit(FREQUENCY, "Hz")
PER_BYTE = FieldUnit(PRICE_PER_BYTE, "/B")
PER_SECOND = FieldUnit(PRICE_PER_TIME, "/s")


def _json_schema(unit: FieldUnit, *, optional: bool) -> WithJsonSchema:
    """What a quantity field accepts, for the exported JSON Schema: a number in its unit, or text with a unit."""
    family = unit.family
    choices: list[dict[str, Any]] = [
        {"type": "number"},
        {"type": "string", "pattern": QUANTITY_PATTERN},
    ]
    if optional:
        choices.append({"type": "null"})
    return WithJsonSchema(
        {"anyOf": choices, "description": f"a number in {unit.plain}, or {family.noun} with its unit like '{family.example}'"}
    )


def _reader(unit: FieldUnit) -> BeforeValidator:
    """A pydantic before-validator: a number in ``unit``, or text with a unit (:mod:`tiercut.env.units`)."""

    def read(value: Any) -> Any:
        return None if value is None else unit.parse(value)  # the error's location names the field

    # the file may hold a number or text with a unit: say so in the exported JSON Schema
    return BeforeValidator(read, json_schema_input_type=float | str | None)


def parse_bandwidth(value: Any, where: str) -> float:
    """A link rate in BYTES per second from an environment file: the one place rates are parsed.

    A number (int or float, > 0 and finite) is bytes per second, and so is
    the text of one (YAML reads ``1.0e6`` without an exponent sign as text);
    text with a unit (``20 Mbit/s``, ``2.5 MB/s``) is converted
    (:mod:`tiercut.env.units`). ``where`` names the field for the error
    message ("": the caller's error location does).
    """
    rate = BYTES_PER_S.parse(value, where)
    if not (rate > 0 and math.isfinite(rate)):
        lead = f"{where}: " if where else ""
        raise ValueError(
            f"{lead}{value!r} is not a bandwidth: it must be finite and > 0 (bytes per second, or text like '20 Mbit/s')"
        )
    return rate


def _rate(value: Any) -> float | None:
    return None if value is None else parse_bandwidth(value, "")


#: a link rate: bytes per second, or text with a rate unit; > 0 and finite
Rate = Annotated[float | None, BeforeValidator(_rate), _json_schema(BYTES_PER_S, optional=True)]
Seconds = Annotated[float, _reader(SECONDS), _json_schema(SECONDS, optional=False)]
OptionalSeconds = Annotated[float | None, _reader(SECONDS), _json_schema(SECONDS, optional=True)]
Bytes = Annotated[float | None, _reader(BYTES), _json_schema(BYTES, optional=True)]
Watts = Annotated[float | None, _reader(WATTS), _json_schema(WATTS, optional=True)]
FlopPerS = Annotated[float | None, _reader(FLOP_PER_S), _json_schema(FLOP_PER_S, optional=True)]
BytesPerS = Annotated[float | None, _reader(BYTES_PER_S), _json_schema(BYTES_PER_S, optional=True)]
Gigahertz = Annotated[float | None, _reader(GHZ), _json_schema(GHZ, optional=True)]
Hertz = Annotated[float, _reader(HZ), _json_schema(HZ, optional=False)]
PricePerByte = Annotated[float, _reader(PER_BYTE), _json_schema(PER_BYTE, optional=False)]
OptionalPricePerByte = Annotated[float | None, _reader(PER_BYTE), _json_schema(PER_BYTE, optional=True)]
PricePerSecond = Annotated[float, _reader(PER_SECOND), _json_schema(PER_SECOND, optional=False)]


def _both_names_in_schema(schema: dict[str, Any], model: type) -> None:
    """The exported JSON Schema lists a field under its short name and its long name (not both at once)."""
    properties = schema.get("properties", {})
    exclusive = []
    for short, long in getattr(model, "short_names", {}).items():
        if short in properties and long not in properties:
            properties[long] = dict(properties[short])
        exclusive.append({"required": [short, long]})
    if exclusive:
        schema["not"] = {"anyOf": exclusive}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_both_names_in_schema)

    #: short name -> field name, both accepted in a file (giving both is refused)
    short_names: ClassVar[Mapping[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _one_name_per_field(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for short, long in cls.short_names.items():
                if short in data and long in data:
                    raise ValueError(f"give {short} or {long} (the same figure), not both")
        return data


class SpeedModel(_Strict):
    peak_flops: FlopPerS = Field(default=None, gt=0, allow_inf_nan=False)
    memory_bandwidth_bps: BytesPerS = Field(default=None, gt=0, allow_inf_nan=False)
    cpu_ghz: Gigahertz = Field(default=None, gt=0, allow_inf_nan=False)

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
    """One entry of ``devices:``; ``memory`` is a short name of ``memory_bytes``."""

    short_names: ClassVar[Mapping[str, str]] = {"memory": "memory_bytes"}

    name: str = Field(min_length=1)
    tier: Tier
    spec: Any = None
    precision: Literal["fp32", "fp16", "int8"] | None = None
    memory_bytes: Bytes = Field(default=None, ge=0, allow_inf_nan=False, validation_alias=AliasChoices("memory", "memory_bytes"))
    power_compute_w: Watts = Field(default=None, ge=0, allow_inf_nan=False)
    power_tx_w: Watts = Field(default=None, ge=0, allow_inf_nan=False)
    power_rx_w: Watts = Field(default=None, ge=0, allow_inf_nan=False)
    power_idle_w: Watts = Field(default=None, ge=0, allow_inf_nan=False)
    price_per_s: PricePerSecond = Field(default=0.0, ge=0, allow_inf_nan=False)
    #: seconds busy per message sent or received (docs/cost-model.md "Per-message costs"); 0: not modelled
    message_s: Seconds = Field(default=0.0, ge=0, allow_inf_nan=False)

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


class LinkModel(_Strict):
    """One entry of ``links:``.

    Rates are BYTES per second as plain numbers, or text with a unit
    (``20 Mbit/s``, ``2.5 MB/s``); times are seconds or text (``5 ms``);
    prices are per byte or text (``0.09/GB``). Either ``bandwidth_bytes_per_s``
    (both directions, or ``a -> b`` when ``bandwidth_bytes_per_s_ba`` gives
    ``b -> a``), or ``up`` (``a -> b``; for ``tiers: [t1, t2]``, from the
    ``t1`` device to the ``t2`` device) with an optional ``down`` (the other
    way; default: as ``up``). ``latency_s_ba`` and ``price_per_byte_ba`` give
    the ``b -> a`` latency and price (default: as ``a -> b``). Short names:
    ``bandwidth``, ``bandwidth_ba``, ``latency``, ``latency_ba``, ``price``,
    ``price_ba``. The old field ``bandwidth_bps`` (bytes per second too) is
    read with a warning.
    """

    short_names: ClassVar[Mapping[str, str]] = {
        "bandwidth": "bandwidth_bytes_per_s",
        "bandwidth_ba": "bandwidth_bytes_per_s_ba",
        "latency": "latency_s",
        "latency_ba": "latency_s_ba",
        "price": "price_per_byte",
        "price_ba": "price_per_byte_ba",
    }

    a: str | None = None
    b: str | None = None
    tiers: tuple[Tier, Tier] | None = None
    bandwidth_bytes_per_s: Rate = Field(default=None, validation_alias=AliasChoices("bandwidth", "bandwidth_bytes_per_s"))
    bandwidth_bps: Rate = None
    up: Rate = None
    down: Rate = None
    bandwidth_bytes_per_s_ba: Rate = Field(
        default=None, validation_alias=AliasChoices("bandwidth_ba", "bandwidth_bytes_per_s_ba")
    )
    latency_s: Seconds = Field(default=0.0, ge=0, allow_inf_nan=False, validation_alias=AliasChoices("latency", "latency_s"))
    price_per_byte: PricePerByte = Field(
        default=0.0, ge=0, allow_inf_nan=False, validation_alias=AliasChoices("price", "price_per_byte")
    )
    latency_s_ba: OptionalSeconds = Field(
        default=None, ge=0, allow_inf_nan=False, validation_alias=AliasChoices("latency_ba", "latency_s_ba")
    )
    price_per_byte_ba: OptionalPricePerByte = Field(
        default=None, ge=0, allow_inf_nan=False, validation_alias=AliasChoices("price_ba", "price_per_byte_ba")
    )
    #: bytes every message carries besides its tensor, either way (docs/cost-model.md "Per-message costs")
    message_overhead_bytes: Bytes = Field(default=0.0, ge=0, allow_inf_nan=False)

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
            raise ValueError(
                "a link needs a rate: bandwidth (e.g. '20 Mbit/s'; a plain number is bytes per second), or up (and down)"
            )
        if len(forward) > 1:
            raise ValueError(f"give one of {' / '.join(forward)}, not several (up is the a -> b bandwidth)")
        if self.down is not None and self.bandwidth_bytes_per_s_ba is not None:
            raise ValueError("give down or bandwidth_bytes_per_s_ba (both are the b -> a bandwidth), not both")
        if self.tiers is not None and self.tiers[0] == self.tiers[1] and self.directional_figures():
            raise ValueError(
                f"a link within tier {self.tiers[0]!r} has no up or down direction; "
                "give its two devices (a, b) for a directional link"
            )
        return self

    def rate_ab(self) -> float:
        """The ``a -> b`` bytes per second (validated: exactly one of the three is set)."""
        return next(r for r in (self.bandwidth_bytes_per_s, self.bandwidth_bps, self.up) if r is not None)

    def rate_ba(self) -> float | None:
        return self.down if self.down is not None else self.bandwidth_bytes_per_s_ba

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
            message_overhead_bytes=float(self.message_overhead_bytes or 0.0),
        )


class UserModel(_Strict):
    name: str = Field(min_length=1)
    device: str = Field(min_length=1)
    model: str = Field(min_length=1)
    query_rate_hz: Hertz = Field(default=1.0, gt=0, allow_inf_nan=False)
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
    shown = ""
    if not isinstance(value, Mapping) and err["type"] != "missing" and repr(value) not in msg and ", got " not in msg:
        shown = f" (got {value!r:.60})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"


def environment_from_mapping(data: Any, *, name: str | None = None, base_dir: Any = None) -> Environment:
    """Validate a parsed environment file and build the :class:`Environment`.

    The steps: check the header (a mapping of this schema version), validate
    every field (:class:`EnvironmentModel`, units read there), warn about
    legacy field names, then build the devices, the links (tier pairs
    expanded, explicit links winning) and the users, each checked against
    the devices. ``base_dir``: the folder relative catalog paths
    (``spec: {catalog: ...}``) are resolved against.
    """
    label = _check_header(data, name)
    model = _validate(data, label)
    env_name = name or model.name or "environment"
    _warn_legacy_fields(model, env_name)
    devices = _build_devices(model, env_name, base_dir)
    return Environment(
        name=env_name,
        devices=devices,
        links=_build_links(model, env_name, devices),
        users=_build_users(model, env_name, devices),
        description=model.description,
        sources=model.sources,
    )


def _check_header(data: Any, name: str | None) -> str:
    """The environment's label for errors; refuses a non-mapping and another schema version."""
    label = name or (data.get("name") if isinstance(data, Mapping) else None) or "environment"
    if not isinstance(data, Mapping):
        raise TiercutError(f"environment {label!r} must be a mapping with devices/links/users, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise TiercutError(f"environment {label!r} has schema_version {version!r}; this tiercut reads {SCHEMA_VERSION}")
    return str(label)


def _validate(data: Mapping[str, Any], label: str) -> EnvironmentModel:
    try:
        return EnvironmentModel.model_validate(dict(data))
    except ValidationError as exc:
        raise TiercutError(f"environment {label!r}: {_first_error(exc)}; fix the file") from None


def _warn_legacy_fields(model: EnvironmentModel, env_name: str) -> None:
    for i, spec_link in enumerate(model.links):
        if spec_link.bandwidth_bps is not None:
            warn_legacy_bandwidth(f"environment {env_name!r}: links.{i}")


def _device_spec(spec: Any, base_dir: Any) -> str | DeviceSpeed | CatalogRef | None:
    """A validated ``spec:`` as the :class:`Device`'s spec (catalog paths resolved against ``base_dir``)."""
    if isinstance(spec, CatalogRefModel):
        path = Path(spec.catalog)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        return CatalogRef(catalog=str(path), entry=spec.entry)
    if isinstance(spec, SpeedModel):
        return DeviceSpeed(peak_flops=spec.peak_flops, memory_bandwidth_bps=spec.memory_bandwidth_bps, cpu_ghz=spec.cpu_ghz)
    return spec


def _build_devices(model: EnvironmentModel, env_name: str, base_dir: Any) -> tuple[Device, ...]:
    devices: list[Device] = []
    for d in model.devices:
        if any(known.name == d.name for known in devices):
            raise TiercutError(f"environment {env_name!r} has two devices named {d.name!r}; rename one")
        devices.append(
            Device(
                name=d.name,
                tier=d.tier,
                spec=_device_spec(d.spec, base_dir),
                memory_bytes=None if d.memory_bytes is None else int(d.memory_bytes),
                power_compute_w=d.power_compute_w,
                power_tx_w=d.power_tx_w,
                power_rx_w=d.power_rx_w,
                power_idle_w=d.power_idle_w,
                price_per_s=d.price_per_s,
                precision=d.precision,
                message_s=d.message_s,
            )
        )
    return tuple(devices)


def _tier_pairs(t1: str, t2: str, by_tier: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    """The device pairs a ``tiers: [t1, t2]`` link joins (within one tier: every pair of distinct devices)."""
    if t1 == t2:
        return [(x, y) for j, x in enumerate(by_tier[t1]) for y in by_tier[t1][j + 1 :]]
    return [(x, y) for x in by_tier[t1] for y in by_tier[t2]]


def _build_links(model: EnvironmentModel, env_name: str, devices: tuple[Device, ...]) -> tuple[Link, ...]:
    """Tier-pair links expanded to device pairs, explicit links winning; ordered by their devices' order."""
    names = [d.name for d in devices]
    by_tier = {t: [d.name for d in devices if d.tier == t] for t in TIERS}
    expanded: dict[frozenset[str], Link] = {}
    explicit: dict[frozenset[str], Link] = {}
    for i, spec_link in enumerate(model.links):
        if spec_link.tiers is not None:
            t1, t2 = spec_link.tiers
            empty = next((t for t in (t1, t2) if not by_tier[t]), None)
            if empty is not None:
                raise TiercutError(
                    f"environment {env_name!r}: links.{i} joins tier {empty!r}, which has no device; "
                    "add a device of that tier or drop the link"
                )
            for x, y in _tier_pairs(t1, t2, by_tier):
                expanded[frozenset((x, y))] = spec_link.link(x, y)
            continue
        a, b = str(spec_link.a), str(spec_link.b)
        unknown = next((end for end in (a, b) if end not in names), None)
        if unknown is not None:
            raise TiercutError(
                f"environment {env_name!r}: links.{i} names unknown device {unknown!r}; devices are {', '.join(names)}"
            )
        key = frozenset((a, b))
        if key in explicit:
            raise TiercutError(f"environment {env_name!r} has two links between {a!r} and {b!r}; keep one")
        explicit[key] = spec_link.link(a, b)
    order = {name: i for i, name in enumerate(names)}
    merged = {**expanded, **explicit}
    return tuple(sorted(merged.values(), key=lambda link: tuple(sorted((order[link.a], order[link.b])))))


def _build_users(model: EnvironmentModel, env_name: str, devices: tuple[Device, ...]) -> tuple[User, ...]:
    names = [d.name for d in devices]
    users: list[User] = []
    for u in model.users:
        if any(known.name == u.name for known in users):
            raise TiercutError(f"environment {env_name!r} has two users named {u.name!r}; rename one")
        if u.device not in names:
            raise TiercutError(
                f"environment {env_name!r}: user {u.name!r} is on unknown device {u.device!r}; devices are {', '.join(names)}"
            )
        users.append(User(u.name, u.device, u.model, u.query_rate_hz, u.input_shape))
    return tuple(users)
