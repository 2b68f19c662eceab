"""Devices, links, users and the environment that holds them.

An :class:`Environment` is the survey's "deployment locations" dimension: the
end devices, edge servers and cloud servers a DNN can be split over, the
links between them and the users whose queries run there. Units are SI
(docs/DESIGN.md): bytes, bytes per second (``bandwidth_bytes_per_s``), seconds,
watts, and a price per second / per byte in one currency unit.

These are plain frozen dataclasses; YAML files are validated by
:mod:`tiercut.env.schema` before they become these objects, so every value
here is already checked (names unique, links between known devices,
non-negative figures).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tiercut.errors import TiercutError

SCHEMA_VERSION = 1

TIERS = ("end", "edge", "cloud")


@dataclass(frozen=True)
class DeviceSpeed:
    """Explicit speed figures of a device that is not in the device catalog.

    Either a roofline pair (``peak_flops`` with ``memory_bandwidth_bps``), or
    the migration seed's "CPU processing capacity" in GHz. A GHz figure
    becomes node time through ``tiercut.profile.DeviceSpec.from_cpu_ghz``:
    the device gets the reference host's measured FLOP/s and memory
    bandwidth per aggregate GHz scaled to ``cpu_ghz``, so every node's time
    is the host's time times ``reference_ghz / cpu_ghz`` (node time =
    cycles / GHz, the seed's model).

    Attributes:
        peak_flops: sustained floating point operations per second.
        memory_bandwidth_bps: memory bandwidth in bytes per second.
        cpu_ghz: aggregate CPU capacity in GHz (clock x cores in use).
    """

    peak_flops: float | None = None
    memory_bandwidth_bps: float | None = None
    cpu_ghz: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.peak_flops is not None:
            data["peak_flops"] = self.peak_flops
        if self.memory_bandwidth_bps is not None:
            data["memory_bandwidth_bps"] = self.memory_bandwidth_bps
        if self.cpu_ghz is not None:
            data["cpu_ghz"] = self.cpu_ghz
        return data


@dataclass(frozen=True)
class CatalogRef:
    """A device entry of a user's catalog file (e.g. written by ``tiercut devices calibrate``).

    Attributes:
        catalog: path of the catalog YAML file (relative paths are resolved
            against the environment file's folder when it is loaded).
        entry: the device's name in that file.
    """

    catalog: str
    entry: str

    def to_dict(self) -> dict[str, Any]:
        return {"catalog": self.catalog, "entry": self.entry}


@dataclass(frozen=True)
class Device:
    """One place a layer can run.

    Attributes:
        name: unique name in the environment.
        tier: ``"end"``, ``"edge"`` or ``"cloud"``.
        spec: how fast it is: the name of a device-catalog entry
            (``tiercut.profile.get_device_spec``), an entry of a user's
            catalog file (:class:`CatalogRef`), explicit :class:`DeviceSpeed`
            figures, or None for "this host" (times measured or predicted on
            the machine tiercut runs on).
        precision: ``fp32``, ``fp16`` or ``int8`` for a catalog device (None:
            the entry's default precision).
        memory_bytes: memory for model weights; None = unlimited.
        power_compute_w, power_tx_w, power_rx_w, power_idle_w: powers while
            computing, sending, receiving, idle; None = the catalog entry's
            figure where it has one, else 0.
        price_per_s: money per second of compute on this device.
        message_s: seconds this device is busy per message it sends or receives
            (framing, codec, system calls, dispatch: docs/cost-model.md
            "Per-message costs"); 0, the default, leaves them out.
    """

    name: str
    tier: str
    spec: str | DeviceSpeed | CatalogRef | None = None
    memory_bytes: int | None = None
    power_compute_w: float | None = None
    power_tx_w: float | None = None
    power_rx_w: float | None = None
    power_idle_w: float | None = None
    price_per_s: float = 0.0
    precision: str | None = None
    message_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "tier": self.tier}
        if isinstance(self.spec, (DeviceSpeed, CatalogRef)):
            data["spec"] = self.spec.to_dict()
        elif self.spec is not None:
            data["spec"] = self.spec
        for key in ("memory_bytes", "power_compute_w", "power_tx_w", "power_rx_w", "power_idle_w"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        data["price_per_s"] = self.price_per_s
        if self.precision is not None:
            data["precision"] = self.precision
        if self.message_s:
            data["message_s"] = self.message_s
        return data


class LegacyFieldWarning(UserWarning):
    """An environment or problem file uses an older field name; it is read, and should be renamed."""


@dataclass(frozen=True)
class LinkDirection:
    """The figures of one direction of a link (what a transfer from ``src`` to ``dst`` pays).

    Attributes:
        src, dst: the sending and the receiving device.
        bandwidth_bytes_per_s: BYTES per second.
        latency_s: one-way latency added to every transfer.
        price_per_byte: money per byte sent this way.
        message_overhead_bytes: bytes every message carries besides its tensor (framing, metadata).
    """

    src: str
    dst: str
    bandwidth_bytes_per_s: float
    latency_s: float
    price_per_byte: float
    message_overhead_bytes: float = 0.0

    def seconds(self, nbytes: float) -> float:
        """``latency_s + nbytes / bandwidth_bytes_per_s``: one tensor over this hop (without the per-message
        costs, which :class:`tiercut.cost.routing.Path` adds)."""
        return self.latency_s + nbytes / self.bandwidth_bytes_per_s


@dataclass(frozen=True)
class Link:
    """A link between two devices, symmetric unless its ``b -> a`` figures are given.

    ``bandwidth_bytes_per_s``, ``latency_s`` and ``price_per_byte`` are the
    ``a -> b`` figures (for a YAML link, ``up``); the ``_ba`` fields are the
    ``b -> a`` figures (``down``), None meaning "the same as ``a -> b``". So
    an uplink slower than the downlink is ``Link(phone, edge, up, ...,
    bandwidth_bytes_per_s_ba=down)``. :meth:`direction` gives the figures a
    transfer from one end to the other pays.

    Attributes:
        a, b: device names.
        bandwidth_bytes_per_s: BYTES per second from ``a`` to ``b``.
        latency_s: one-way latency from ``a`` to ``b``, added to every transfer.
        price_per_byte: money per byte sent from ``a`` to ``b``.
        bandwidth_bytes_per_s_ba, latency_s_ba, price_per_byte_ba: the same
            from ``b`` to ``a`` (None: as from ``a`` to ``b``).
        message_overhead_bytes: bytes every message over the link carries
            besides its tensor, either way (framing, metadata; they occupy the
            link: docs/cost-model.md "Per-message costs"); 0 by default.
    """

    a: str
    b: str
    bandwidth_bytes_per_s: float
    latency_s: float = 0.0
    price_per_byte: float = 0.0
    bandwidth_bytes_per_s_ba: float | None = None
    latency_s_ba: float | None = None
    price_per_byte_ba: float | None = None
    message_overhead_bytes: float = 0.0

    @property
    def key(self) -> frozenset[str]:
        return frozenset((self.a, self.b))

    @property
    def directional(self) -> bool:
        """Its two directions have different figures."""
        ab, ba = self.directions()
        return (ab.bandwidth_bytes_per_s, ab.latency_s, ab.price_per_byte) != (
            ba.bandwidth_bytes_per_s,
            ba.latency_s,
            ba.price_per_byte,
        )

    def direction(self, src: str, dst: str) -> LinkDirection:
        """The figures of a transfer from ``src`` to ``dst`` (the link's two ends, either order)."""
        if (src, dst) == (self.a, self.b):
            return LinkDirection(src, dst, self.bandwidth_bytes_per_s, self.latency_s, self.price_per_byte,
                                 self.message_overhead_bytes)
        if (src, dst) == (self.b, self.a):
            return LinkDirection(
                src,
                dst,
                self.bandwidth_bytes_per_s if self.bandwidth_bytes_per_s_ba is None else self.bandwidth_bytes_per_s_ba,
                self.latency_s if self.latency_s_ba is None else self.latency_s_ba,
                self.price_per_byte if self.price_per_byte_ba is None else self.price_per_byte_ba,
                self.message_overhead_bytes,
            )
        raise TiercutError(f"link {self.a}-{self.b} does not join {src!r} and {dst!r}")

    def directions(self) -> tuple[LinkDirection, LinkDirection]:
        """``a -> b`` and ``b -> a``."""
        return self.direction(self.a, self.b), self.direction(self.b, self.a)

    def scaled(self, bandwidth_factor: float) -> Link:
        """This link with both directions' bandwidths multiplied by ``bandwidth_factor``."""
        ba = self.bandwidth_bytes_per_s_ba
        return replace(
            self,
            bandwidth_bytes_per_s=self.bandwidth_bytes_per_s * bandwidth_factor,
            bandwidth_bytes_per_s_ba=None if ba is None else ba * bandwidth_factor,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "a": self.a,
            "b": self.b,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "latency_s": self.latency_s,
            "price_per_byte": self.price_per_byte,
        }
        for key in ("bandwidth_bytes_per_s_ba", "latency_s_ba", "price_per_byte_ba"):
            value = getattr(self, key)
            if value is not None:
                data[key] = value
        if self.message_overhead_bytes:
            data["message_overhead_bytes"] = self.message_overhead_bytes
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Link:
        """A link from its JSON form; the older ``bandwidth_bps`` (bytes per second too) is read with a warning."""
        data = dict(data)
        label = f"link {data.get('a', '?')}-{data.get('b', '?')}"
        if "bandwidth_bps" in data:
            if "bandwidth_bytes_per_s" in data:
                raise TiercutError(f"{label} gives both bandwidth_bps and bandwidth_bytes_per_s; keep bandwidth_bytes_per_s")
            warn_legacy_bandwidth(label)
            data["bandwidth_bytes_per_s"] = data.pop("bandwidth_bps")

        def optional(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        try:
            return cls(
                a=str(data["a"]),
                b=str(data["b"]),
                bandwidth_bytes_per_s=float(data["bandwidth_bytes_per_s"]),
                latency_s=float(data.get("latency_s", 0.0)),
                price_per_byte=float(data.get("price_per_byte", 0.0)),
                bandwidth_bytes_per_s_ba=optional("bandwidth_bytes_per_s_ba"),
                latency_s_ba=optional("latency_s_ba"),
                price_per_byte_ba=optional("price_per_byte_ba"),
                message_overhead_bytes=float(data.get("message_overhead_bytes", 0.0)),
            )
        except KeyError as exc:
            raise TiercutError(f"{label} lacks the field {exc}; add it") from None
        except (TypeError, ValueError):
            raise TiercutError(f"{label} holds a figure that is not a number; give numbers (bytes/s, s, money/byte)") from None


def warn_legacy_bandwidth(label: str) -> None:
    """The one warning for the old field name ``bandwidth_bps``."""
    warnings.warn(
        f"{label}: 'bandwidth_bps' is the old name of 'bandwidth_bytes_per_s' (bytes per second, not bits); "
        "it is read as bytes per second -- rename the field",
        LegacyFieldWarning,
        stacklevel=3,
    )


@dataclass(frozen=True)
class User:
    """A user issuing queries from its own (source) device.

    Attributes:
        name: unique name.
        device: the source device: inputs are produced and results needed there.
        model: a model spec (zoo name, ``package.module:factory`` or ``.onnx``).
        query_rate_hz: queries per second the user issues (the simulator's
            arrival rate; the analytic model plans one query).
        input_shape: input shape for the model, None = its documented size.
    """

    name: str
    device: str
    model: str
    query_rate_hz: float = 1.0
    input_shape: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "device": self.device,
            "model": self.model,
            "query_rate_hz": self.query_rate_hz,
        }
        if self.input_shape is not None:
            data["input_shape"] = list(self.input_shape)
        return data


@dataclass(frozen=True)
class Environment:
    """Devices, the links between them and the users.

    Links are stored expanded to device pairs (a YAML tier-pair link becomes
    one link per pair of devices). Two devices without a link cannot exchange
    tensors. Build one from YAML with :func:`tiercut.env.load_environment` or
    from a dict with :meth:`from_dict` (both validate).

    Attributes:
        name: a label (the preset name or the file stem).
        description: one paragraph saying what it models.
        devices, links, users: see the classes.
        sources: where the figures come from (papers, data sheets).
    """

    name: str
    devices: tuple[Device, ...]
    links: tuple[Link, ...] = ()
    users: tuple[User, ...] = ()
    description: str = ""
    sources: tuple[str, ...] = ()
    _devices: dict[str, Device] = field(default_factory=dict, init=False, repr=False, compare=False)
    _links: dict[frozenset[str], Link] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for device in self.devices:
            if device.name in self._devices:
                raise TiercutError(f"environment {self.name!r} has two devices named {device.name!r}; rename one")
            self._devices[device.name] = device
        for link in self.links:
            for end in (link.a, link.b):
                if end not in self._devices:
                    raise TiercutError(
                        f"environment {self.name!r}: link {link.a}-{link.b} names unknown device {end!r}; "
                        f"devices are {', '.join(self._devices)}"
                    )
            self._links[link.key] = link
        names: set[str] = set()
        for user in self.users:
            if user.name in names:
                raise TiercutError(f"environment {self.name!r} has two users named {user.name!r}; rename one")
            names.add(user.name)
            if user.device not in self._devices:
                raise TiercutError(
                    f"environment {self.name!r}: user {user.name!r} is on unknown device {user.device!r}; "
                    f"devices are {', '.join(self._devices)}"
                )

    # ----------------------------------------------------------- access
    def device(self, name: str) -> Device:
        try:
            return self._devices[name]
        except KeyError:
            raise TiercutError(
                f"environment {self.name!r} has no device {name!r}; devices are {', '.join(self._devices)}"
            ) from None

    def link(self, a: str, b: str) -> Link | None:
        """The link between ``a`` and ``b`` (either order), None if there is none."""
        return self._links.get(frozenset((a, b)))

    @property
    def device_names(self) -> list[str]:
        return [d.name for d in self.devices]

    def devices_in_tier(self, tier: str) -> list[Device]:
        return [d for d in self.devices if d.tier == tier]

    def default_source(self) -> str:
        """The first user's device, else the first end-tier device, else the first device."""
        if self.users:
            return self.users[0].device
        ends = self.devices_in_tier("end")
        return (ends[0] if ends else self.devices[0]).name

    def user(self, name: str) -> User:
        for user in self.users:
            if user.name == name:
                return user
        raise TiercutError(
            f"environment {self.name!r} has no user {name!r}; users are {', '.join(u.name for u in self.users) or 'none'}"
        )

    # ----------------------------------------------------------- variations (a new environment each)
    def with_link_bandwidth(self, a: str, b: str, bandwidth: float | str, *, reverse: float | str | None = None) -> Environment:
        """This environment with the ``a``-``b`` link's bandwidth set (BYTES per second, or a rate text).

        ``reverse``: the ``b -> a`` bandwidth when it differs (default: the
        same as ``a -> b``). Use it for a sweep:
        ``[env.with_link_bandwidth("phone", "edge", bw) for bw in (1e6, 1e7, 1e8)]``.
        """
        from tiercut.env.schema import parse_bandwidth

        link = self.link(a, b)
        if link is None:
            raise TiercutError(f"environment {self.name!r} has no link between {a!r} and {b!r}; add one to the environment")

        def rate(value: float | str, where: str) -> float:
            try:
                return parse_bandwidth(value, where)
            except ValueError as exc:
                raise TiercutError(str(exc)) from None

        forward = rate(bandwidth, f"bandwidth of link {a}-{b}")
        backward = None if reverse is None else rate(reverse, f"reverse bandwidth of link {a}-{b}")
        if (link.a, link.b) != (a, b):  # the link is stored b-a: its a -> b figures are our reverse
            forward, backward = (forward if backward is None else backward), (None if backward is None else forward)
        changed = replace(link, bandwidth_bytes_per_s=forward, bandwidth_bytes_per_s_ba=backward)
        return self._with_links(tuple(changed if x is link else x for x in self.links), f"{a}-{b}={bandwidth}")

    def with_link_latency(self, a: str, b: str, latency_s: float) -> Environment:
        """This environment with the ``a``-``b`` link's one-way latency (seconds, both directions) set."""
        link = self.link(a, b)
        if link is None:
            raise TiercutError(f"environment {self.name!r} has no link between {a!r} and {b!r}; add one to the environment")
        if not (latency_s >= 0 and latency_s < float("inf")):
            raise TiercutError(f"latency of link {a}-{b} is {latency_s!r}; give a finite number of seconds >= 0")
        changed = replace(link, latency_s=float(latency_s), latency_s_ba=None)
        return self._with_links(tuple(changed if x is link else x for x in self.links), f"{a}-{b} {latency_s:g}s")

    def scaled(self, bandwidth: float = 1.0, *, tiers: tuple[str, ...] | None = None) -> Environment:
        """This environment with every link's bandwidth multiplied by ``bandwidth``.

        ``tiers``: only links touching a device of these tiers (e.g. ``("end",)``
        for the wireless first hop).
        """
        if not (bandwidth > 0 and bandwidth < float("inf")):
            raise TiercutError(f"bandwidth factor {bandwidth!r} must be a finite number > 0")
        touched = None if tiers is None else {d.name for d in self.devices if d.tier in tiers}
        links = tuple(
            x.scaled(bandwidth) if touched is None or x.a in touched or x.b in touched else x for x in self.links
        )
        return self._with_links(links, f"bandwidth x{bandwidth:g}")

    def with_users(self, users: tuple[User, ...] | list[User]) -> Environment:
        """This environment with other users (their devices are checked)."""
        return replace(self, users=tuple(users))

    def _with_links(self, links: tuple[Link, ...], what: str) -> Environment:
        return replace(self, links=links, name=f"{self.name}[{what}]")

    # ----------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "sources": list(self.sources),
            "devices": [d.to_dict() for d in self.devices],
            "links": [link.to_dict() for link in self.links],
            "users": [u.to_dict() for u in self.users],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str | None = None) -> Environment:
        """Validate a dict (a parsed YAML or JSON file) and build the environment.

        Accepts the YAML authoring form too (tier-pair links, ``schema_version``
        optional); raises a one-line :class:`TiercutError` on any problem.
        """
        from tiercut.env.schema import environment_from_mapping

        return environment_from_mapping(data, name=name)
