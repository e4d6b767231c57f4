"""The ``memos`` command line (Typer). Every command takes ``--json`` and prints one JSON document.

Errors: exit code 1 with a one-line message on stderr (and ``{"error": {"type", "message"}}`` on stdout
with ``--json``); usage errors exit with 2.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from memos.cli.app import build_app
    from memos.telemetry import configure_from_env

    configure_from_env()  # OTEL_TRACES_EXPORTER=console|otlp: every command's spans are exported
    app = build_app()
    try:
        app(args=argv if argv is not None else sys.argv[1:], prog_name="memos", standalone_mode=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if argv is not None:
            return code
        raise
    return 0


__all__ = ["main"]
