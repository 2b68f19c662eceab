"""Building problems: from a layer graph and an environment to a :class:`~tiercut.problem.types.Problem`.

:func:`build_problem` turns a graph and an :class:`~tiercut.env.Environment`
into a problem; :func:`build_multi_user_problem` does it for each of the
environment's users. This module is the one place that talks to
:mod:`tiercut.profile` (the device catalog and the per-node compute tables).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tiercut.env import CatalogRef, Device, DeviceSpeed, Environment
from tiercut.errors import TiercutError
from tiercut.graph.types import LayerGraph
from tiercut.problem.types import Constraints, MultiUserProblem, Objective, Problem, ProblemDevice, UserProblem
from tiercut.profile import DeviceSpec, Profile, compute_table, get_device_spec, load_profile


def resolve_devices(
    env: Environment, *, speeds: bool = True
) -> tuple[dict[str, DeviceSpec | None], tuple[ProblemDevice, ...], dict[str, str]]:
    """Environment devices -> (name -> profile DeviceSpec or None, cost-model devices, provenance).

    This and :func:`compute_table_for` are the only code that talks to
    :mod:`tiercut.profile`: catalog names go through
    ``tiercut.profile.get_device_spec``, explicit roofline figures and CPU
    clocks become ``DeviceSpec`` objects, and no spec means this host.
    A device's powers default to its catalog entry's (compute, idle), else 0.
    With ``speeds=False`` (compute times given explicitly) explicit speeds
    are not turned into specs; catalog entries are still read for powers.
    """
    specs: dict[str, DeviceSpec | None] = {}
    devices: list[ProblemDevice] = []
    provenance: dict[str, str] = {}
    for device in env.devices:
        spec: DeviceSpec | None = None
        if isinstance(device.spec, str):
            spec = get_device_spec(device.spec)
            provenance[device.name] = f"catalog entry {device.spec!r}"
        elif isinstance(device.spec, CatalogRef):
            spec = get_device_spec(device.spec.entry, device.spec.catalog)
            provenance[device.name] = f"entry {device.spec.entry!r} of catalog {device.spec.catalog}"
        elif isinstance(device.spec, DeviceSpeed):
            if speeds:
                spec = _speed_to_spec(device, device.spec)
                provenance[device.name] = spec.description or "explicit speed"
            else:
                provenance[device.name] = "explicit speed (times given)"
        else:
            provenance[device.name] = "this host"
        specs[device.name] = spec

        def power(value: float | None, attr: str, spec: DeviceSpec | None = spec) -> float:
            if value is not None:
                return float(value)
            fallback = getattr(spec, attr, None) if spec is not None else None
            return float(fallback) if fallback is not None else 0.0

        devices.append(
            ProblemDevice(
                name=device.name,
                tier=device.tier,
                power_compute_w=power(device.power_compute_w, "power_compute_w"),
                power_tx_w=power(device.power_tx_w, "power_tx_w"),
                power_rx_w=power(device.power_rx_w, "power_rx_w"),
                power_idle_w=power(device.power_idle_w, "power_idle_w"),
                price_per_s=float(device.price_per_s),
                memory_bytes=device.memory_bytes,
                message_s=float(device.message_s),
            )
        )
    return specs, tuple(devices), provenance


def _speed_to_spec(device: Device, speed: DeviceSpeed) -> DeviceSpec:
    """An explicit :class:`~tiercut.env.DeviceSpeed` as a ``tiercut.profile.DeviceSpec``.

    A CPU clock goes through ``DeviceSpec.from_cpu_ghz`` (the seed's GHz
    model, calibrated on the reference host); a roofline pair becomes a spec
    with those figures. The spec's powers are the device's (0 if not given).
    """
    name = device.name
    compute_w = float(device.power_compute_w or 0.0)
    idle_w = min(float(device.power_idle_w or 0.0), compute_w)
    if speed.cpu_ghz is not None:
        return DeviceSpec.from_cpu_ghz(name, speed.cpu_ghz, power_compute_w=compute_w, power_idle_w=idle_w)
    return DeviceSpec(
        name=name,
        kind="cpu",
        peak_flops=float(speed.peak_flops),
        memory_bandwidth_bps=float(speed.memory_bandwidth_bps),
        power_compute_w=compute_w,
        power_idle_w=idle_w,
        description=f"explicit {speed.peak_flops:.3g} FLOP/s, {speed.memory_bandwidth_bps:.3g} B/s (environment file)",
        sources={"peak_flops": "environment file", "memory_bandwidth_bps": "environment file"},
    )


def compute_table_for(
    graph: LayerGraph,
    specs: Mapping[str, DeviceSpec | None],
    profile: Profile | None = None,
    precisions: Mapping[str, str] | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """node -> device -> seconds from :func:`tiercut.profile.compute_table`, and device -> how its
    column was obtained (the table's ``basis``). ``precisions``: device -> precision of catalog devices."""
    precisions = {d: p for d, p in (precisions or {}).items() if d in specs}
    for device, precision in precisions.items():
        if specs[device] is None and precision != "fp32":
            raise TiercutError(
                f"device {device!r} is this host, which tiercut measures in fp32, but asks for {precision}; "
                "drop its precision or give it a catalog spec"
            )
    precisions = {d: p for d, p in precisions.items() if specs[d] is not None}
    table = compute_table(graph, specs, profile=profile, precisions=precisions)
    seconds = {str(n): {str(d): float(s) for d, s in row.items()} for n, row in table.seconds.items()}
    provenance = {str(k): str(v) for k, v in table.basis.items()}
    return seconds, provenance


def load_profile_file(path: str | Path) -> Profile:
    """A per-node profile file of this host (``tiercut.profile.load_profile``)."""
    return load_profile(path)


def build_problem(
    graph: LayerGraph,
    env: Environment,
    *,
    source: str | None = None,
    objective: Objective | str = "latency",
    constraints: Constraints | None = None,
    compute_s: Mapping[str, Mapping[str, float]] | None = None,
    profile: Profile | None = None,
    devices: list[str] | None = None,
    compute_provenance: Mapping[str, str] | None = None,
) -> Problem:
    """A :class:`Problem` for ``graph`` over ``env``.

    Args:
        graph: the layer graph.
        env: the environment (devices, links).
        source: the source device (default: the environment's first user's
            device, else its first end device).
        objective: an :class:`Objective` or its text form (``latency``,
            ``weighted:latency=1,energy_source=0.1``...).
        constraints: budgets, pins, memory (default: memory only).
        compute_s: node -> device -> seconds to use instead of the profiler
            (e.g. a measured table, or explicit figures in tests); input nodes
            and devices not in the environment are ignored.
        profile: a per-node profile of this host, passed to
            ``tiercut.profile.compute_table``.
        devices: keep only these devices (default: all).
        compute_provenance: with ``compute_s``, device -> how its column was
            obtained (default: "given compute table").
    """
    specs, problem_devices, provenance = resolve_devices(env, speeds=compute_s is None)
    if devices is not None:
        for name in devices:
            env.device(name)
        problem_devices = tuple(d for d in problem_devices if d.name in set(devices))
        specs = {k: v for k, v in specs.items() if k in set(devices)}
    names = {d.name for d in problem_devices}
    if compute_s is None:
        precisions = {d.name: d.precision for d in env.devices if d.precision is not None}
        compute, table_provenance = compute_table_for(graph, specs, profile, precisions)
        provenance.update({k: v for k, v in table_provenance.items() if k in names})
    else:
        compute = {str(n): {str(d): float(s) for d, s in row.items()} for n, row in compute_s.items()}
        provenance = {d: (compute_provenance or {}).get(d, "given compute table") for d in names}
    compute = {
        node.name: {d: s for d, s in compute.get(node.name, {}).items() if d in names}
        for node in graph
        if not node.is_input
    }
    src = source or env.default_source()
    if src not in names:
        raise TiercutError(f"source {src!r} is not a device of environment {env.name!r}; devices are {', '.join(sorted(names))}")
    return Problem(
        graph=graph,
        devices=problem_devices,
        links=tuple(link for link in env.links if link.a in names and link.b in names),
        source=src,
        compute_s=compute,
        objective=Objective.parse(objective) if isinstance(objective, str) else objective,
        constraints=constraints or Constraints(),
        provenance={d: provenance[d] for d in (x.name for x in problem_devices) if d in provenance},
        name=f"{graph.model}@{env.name}",
    )


def build_multi_user_problem(
    env: Environment,
    graphs: Mapping[str, LayerGraph],
    *,
    objective: Objective | str = "latency",
    constraints: Mapping[str, Constraints] | None = None,
    compute_s: Mapping[str, Mapping[str, Mapping[str, float]]] | None = None,
    profile: Profile | None = None,
) -> MultiUserProblem:
    """A :class:`MultiUserProblem` for the environment's users.

    ``graphs`` maps each user's name to its layer graph (capture them with
    :func:`tiercut.graph.extract_graph` from ``User.model``);
    ``compute_s`` optionally maps a user to an explicit compute table.
    """
    if not env.users:
        raise TiercutError(f"environment {env.name!r} has no users; add a users: list for a multi-user problem")
    users = []
    for user in env.users:
        if user.name not in graphs:
            raise TiercutError(f"no graph for user {user.name!r}; pass one per user")
        problem = build_problem(
            graphs[user.name],
            env,
            source=user.device,
            objective=objective,
            constraints=(constraints or {}).get(user.name),
            compute_s=None if compute_s is None else compute_s.get(user.name),
            profile=profile,
        )
        users.append(UserProblem(user.name, problem, user.query_rate_hz))
    obj = Objective.parse(objective) if isinstance(objective, str) else objective
    return MultiUserProblem(tuple(users), obj, name=env.name)


__all__ = ["build_multi_user_problem", "build_problem", "compute_table_for", "load_profile_file", "resolve_devices"]
