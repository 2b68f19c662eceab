"""The ``tiercut`` command.

Each subcommand lives in its own module as a plain function with typer
annotations; this file is the one explicit registry of them. A
:class:`~tiercut.errors.TiercutError` raised anywhere becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tiercut.cli import (
    compress_cmd,
    demo_cmd,
    deploy_cmd,
    env_cmd,
    exits_cmd,
    graph_cmd,
    plan_cmd,
    profile_cmd,
    report_cmd,
    route_cmd,
    run_cmd,
    schema_cmd,
    serve_cmd,
    simulate_cmd,
    sweep_cmd,
    upload_cmd,
)
from tiercut.errors import TiercutError

app = typer.Typer(
    name="tiercut",
    help="Split deep neural networks across end devices, edge servers and cloud servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

env_app = typer.Typer(help="Environments: devices, links and users (presets and YAML files).", no_args_is_help=True)
env_app.command("list")(env_cmd.env_list)
env_app.command("show")(env_cmd.env_show)

def _version(value: bool) -> None:
    if value:
        from tiercut import __version__

        typer.echo(f"tiercut {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_version, help="print tiercut's version and exit")
    ] = False,
) -> None:
    """Split deep neural networks across end devices, edge servers and cloud servers."""


COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell")


def completion(
    shell: Annotated[str, typer.Argument(help="bash, zsh, fish or powershell")],
) -> None:
    """Print the shell completion script of tiercut for SHELL.

    bash: eval "$(tiercut completion bash)" in ~/.bashrc; zsh: the same in ~/.zshrc;
    fish: tiercut completion fish > ~/.config/fish/completions/tiercut.fish
    """
    from typer._completion_shared import get_completion_script

    if shell not in COMPLETION_SHELLS:
        raise TiercutError(f"shell {shell!r} is not supported; use one of {', '.join(COMPLETION_SHELLS)}")
    typer.echo(get_completion_script(prog_name="tiercut", complete_var="_TIERCUT_COMPLETE", shell=shell))


app.command("demo")(demo_cmd.demo)
app.command("graph")(graph_cmd.graph)
app.command("compress")(compress_cmd.compress)
app.command("profile")(profile_cmd.profile)
devices_app = typer.Typer(
    help="The device catalog: list it, or calibrate a device from a profile taken on it.", invoke_without_command=True
)
devices_app.callback()(profile_cmd.devices)
devices_app.command("calibrate")(profile_cmd.calibrate)
app.add_typer(devices_app, name="devices")
app.add_typer(env_app, name="env")
app.command("plan")(plan_cmd.plan)
app.command("compare")(plan_cmd.compare)
app.command("upload")(upload_cmd.upload)
app.command("simulate")(simulate_cmd.simulate)
app.command("serve")(serve_cmd.serve)
app.command("run")(run_cmd.run)
app.command("deploy")(deploy_cmd.deploy)
app.command("report")(report_cmd.report)
app.command("sweep")(sweep_cmd.sweep)
app.command("schema")(schema_cmd.schema)
app.command("completion")(completion)
exits_app = typer.Typer(help="Early exits: add exit branches to a model, train and measure them.", no_args_is_help=True)
exits_app.command("add")(exits_cmd.exits_add)
exits_app.command("show")(exits_cmd.exits_show)
app.add_typer(exits_app, name="exits")
route_app = typer.Typer(
    help="Input-aware routing (AppealNet): a small model here, hard inputs to a big one.", no_args_is_help=True
)
route_app.command("train")(route_cmd.route_train)
route_app.command("eval")(route_cmd.route_eval)
route_app.command("run")(route_cmd.route_run)
app.add_typer(route_app, name="route")


def run_app(typer_app: typer.Typer, argv: list[str] | None, prog_name: str) -> int:
    """Run a typer app, turning user errors into one line on stderr and a non-zero status."""
    try:
        # without standalone mode click returns a command's typer.Exit code instead of raising it
        code = typer_app(args=argv, prog_name=prog_name, standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool) and code:
            return code
    except TiercutError as exc:
        print(f"tiercut: error: {exc}", file=sys.stderr)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        print("tiercut: aborted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            print(f"tiercut: error: {exc.format_message()}", file=sys.stderr)
            return int(code)
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tiercut``."""
    import os

    if os.environ.get("_TIERCUT_COMPLETE"):  # a shell asks for completions (tiercut completion SHELL)
        from typer._completion_classes import completion_init

        completion_init()
    return run_app(app, argv, "tiercut")

if __name__ == "__main__":
    sys.exit(main())
