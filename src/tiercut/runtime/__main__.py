"""``python -m tiercut.runtime --device NAME ...``: the worker, without the rest of the CLI.

The same options as ``tiercut serve``; used to start local workers as
child processes (and as the container's entry point).
"""

import sys

import typer

from tiercut.cli import run_app
from tiercut.cli.serve_cmd import serve


def main(argv: list[str] | None = None) -> int:
    worker_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    worker_app.command()(serve)
    return run_app(worker_app, argv, "tiercut-worker")


if __name__ == "__main__":
    sys.exit(main())
