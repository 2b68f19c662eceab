"""The ``tiercut`` command.

Each subcommand lives in its own module as a plain function with typer
annotations; this file is the one explicit registry of them. A
:class:`~tiercut.errors.TiercutError` raised anywhere becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import sys

import typer

from tiercut.cli import demo_cmd, graph_cmd
from tiercut.errors import TiercutError

app = typer.Typer(
    name="tiercut",
    help="Split deep neural networks across end devices, edge servers and cloud servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("graph")(graph_cmd.graph)
app.command("demo")(demo_cmd.demo)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line and exit 2."""
    try:
        app(args=argv, prog_name="tiercut", standalone_mode=False)
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


if __name__ == "__main__":
    sys.exit(main())
