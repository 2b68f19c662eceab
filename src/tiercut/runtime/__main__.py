"""``python -m tiercut.runtime --device NAME ...``: the worker, without the rest of the CLI.

The same options as ``tiercut serve``; used to start local workers as
child processes (and as the container's entry point).
"""

import sys

import typer

from tiercut.cli.serve_cmd import serve
from tiercut.errors import TiercutError


def main() -> int:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve)
    try:
        app(prog_name="tiercut-worker", standalone_mode=False)
    except TiercutError as exc:
        print(f"tiercut: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # click usage errors carry their own exit code
        code = getattr(exc, "exit_code", None)
        if code is not None and hasattr(exc, "format_message"):
            print(f"tiercut: error: {exc.format_message()}", file=sys.stderr)
            return int(code)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
