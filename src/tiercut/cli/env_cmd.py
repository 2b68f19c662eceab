"""``tiercut env list`` and ``tiercut env show``: the environments shipped with tiercut."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tiercut.env import Environment, list_presets, load_environment
from tiercut.env.units import COMPUTE, FREQUENCY, POWER, PRICE_PER_BYTE, PRICE_PER_TIME, RATE, SIZE, TIME, UnitFamily, human


def rate_text(bytes_per_s: float) -> str:
    """A link rate in bits and in bytes per second: ``5.85 Mbit/s (731 kB/s)``."""
    return f"{human(bytes_per_s, RATE, unit='bit/s', digits=4)} ({human(bytes_per_s, RATE, unit='B/s', digits=4)})"


def _price(value: float, family: UnitFamily) -> str:
    return "-" if value == 0 else human(value, family)


def _speed_text(figures: dict[str, float]) -> str:
    shown = {
        "peak_flops": lambda v: human(v, COMPUTE),
        "memory_bandwidth_bps": lambda v: f"{human(v, RATE, unit='B/s')} memory",
        "cpu_ghz": lambda v: human(v, FREQUENCY, base_unit="GHz"),
    }
    return ", ".join(shown[k](v) for k, v in figures.items())


def env_list(
    as_json: Annotated[bool, typer.Option("--json", help="print the presets as JSON")] = False,
) -> None:
    """List the environment presets shipped with tiercut."""
    presets = list_presets()
    if as_json:
        typer.echo(json.dumps([p.__dict__ for p in presets], indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="environment presets (use with --env NAME)")
    for column in ("name", "devices", "links", "users", "description"):
        table.add_column(column, justify="right" if column in ("devices", "links", "users") else "left")
    for p in presets:
        table.add_row(p.name, str(p.devices), str(p.links), str(p.users), p.description)
    Console(width=None if Console().is_terminal else 160).print(table)


def env_table(env: Environment) -> None:
    """Print an environment's devices, links and users."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    console.print(f"[bold]{env.name}[/bold]: {env.description}")
    devices = Table(title="devices")
    for column in ("name", "tier", "speed", "memory", "power compute/tx/rx/idle", "price"):
        devices.add_column(column)
    for d in env.devices:
        if d.spec is None:
            speed = "this host"
        elif isinstance(d.spec, str):
            speed = f"catalog: {d.spec}"
        elif hasattr(d.spec, "catalog"):
            speed = f"{d.spec.entry} in {d.spec.catalog}"
        else:
            speed = _speed_text(d.spec.to_dict())
        powers = " / ".join(
            "-" if p is None else human(p, POWER) for p in (d.power_compute_w, d.power_tx_w, d.power_rx_w, d.power_idle_w)
        )
        memory = "unlimited" if d.memory_bytes is None else human(d.memory_bytes, SIZE)
        devices.add_row(d.name, d.tier, speed, memory, powers, _price(d.price_per_s, PRICE_PER_TIME))
    console.print(devices)
    links = Table(title="links (a -> b / b -> a where a link's directions differ; devices without one are reached via relays)")
    for column in ("a", "b", "bandwidth", "latency", "price"):
        links.add_column(column)
    for link in env.links:
        ab, ba = link.directions()

        def both(x: str, y: str) -> str:
            return x if x == y else f"{x} / {y}"

        links.add_row(
            link.a,
            link.b,
            both(rate_text(ab.bandwidth_bytes_per_s), rate_text(ba.bandwidth_bytes_per_s)),
            both(human(ab.latency_s, TIME), human(ba.latency_s, TIME)),
            both(_price(ab.price_per_byte, PRICE_PER_BYTE), _price(ba.price_per_byte, PRICE_PER_BYTE)),
        )
    console.print(links)
    if env.users:
        users = Table(title="users")
        for column in ("name", "device", "model", "query rate"):
            users.add_column(column)
        for u in env.users:
            users.add_row(u.name, u.device, u.model, human(u.query_rate_hz, FREQUENCY))
        console.print(users)
    for source in env.sources:
        console.print(f"source: {source}")


def env_show(
    env: Annotated[str, typer.Argument(help="a preset name (see 'tiercut env list') or a YAML/JSON file")],
    as_json: Annotated[bool, typer.Option("--json", help="print the validated environment as JSON")] = False,
) -> None:
    """Validate an environment (preset or file) and show its devices, links and users."""
    environment = load_environment(env)
    if as_json:
        typer.echo(json.dumps(environment.to_dict(), indent=1))
    else:
        env_table(environment)
