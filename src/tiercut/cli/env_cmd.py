"""``tiercut env list`` and ``tiercut env show``: the environments shipped with tiercut."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tiercut.env import Environment, list_presets, load_environment


def _bytes_per_s(value: float) -> str:
    for scale, suffix in ((1e9, "GB/s"), (1e6, "MB/s"), (1e3, "kB/s")):
        if value >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.3g} B/s"


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
    for column in ("name", "tier", "speed", "memory", "P compute/tx/rx/idle (W)", "price/s"):
        devices.add_column(column)
    for d in env.devices:
        if d.spec is None:
            speed = "this host"
        elif isinstance(d.spec, str):
            speed = f"catalog: {d.spec}"
        else:
            speed = ", ".join(f"{k}={v:g}" for k, v in d.spec.to_dict().items())
        powers = "/".join("-" if p is None else f"{p:g}" for p in (d.power_compute_w, d.power_tx_w, d.power_rx_w, d.power_idle_w))
        memory = "unlimited" if d.memory_bytes is None else f"{d.memory_bytes / 1e9:.3g} GB"
        devices.add_row(d.name, d.tier, speed, memory, powers, f"{d.price_per_s:g}")
    console.print(devices)
    links = Table(title="links (a -> b / b -> a where a link's directions differ; devices without one are reached via relays)")
    for column in ("a", "b", "bandwidth", "latency (ms)", "price/byte"):
        links.add_column(column)
    for link in env.links:
        ab, ba = link.directions()

        def both(x: str, y: str) -> str:
            return x if x == y else f"{x} / {y}"

        links.add_row(
            link.a,
            link.b,
            both(_bytes_per_s(ab.bandwidth_bytes_per_s), _bytes_per_s(ba.bandwidth_bytes_per_s)),
            both(f"{ab.latency_s * 1e3:g}", f"{ba.latency_s * 1e3:g}"),
            both(f"{ab.price_per_byte:g}", f"{ba.price_per_byte:g}"),
        )
    console.print(links)
    if env.users:
        users = Table(title="users")
        for column in ("name", "device", "model", "queries/s"):
            users.add_column(column)
        for u in env.users:
            users.add_row(u.name, u.device, u.model, f"{u.query_rate_hz:g}")
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
