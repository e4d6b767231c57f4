"""Shared CLI plumbing: the open handle, JSON/human output, error reporting, KEY=VALUE parsing."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from memos.errors import InvalidInput, MemosError

JSON_OPT = typer.Option(False, "--json", help="Print one JSON document.")


class CliState:
    def __init__(self) -> None:
        self.home: str | None = None
        self.principal: str | None = None
        self.json = False
        self.address: str | None = None
        self._mos: Any = None

    def cluster_address(self) -> str | None:
        """``--address``/``MEMOS_ADDRESS``, else the cluster ``memos up`` recorded in the home."""
        if self.address:
            return self.address
        from memos.config import default_home

        state = (Path(self.home) if self.home else default_home()) / "cluster.json"
        if state.exists():
            return str(json.loads(state.read_text())["address"])
        return None

    def mos(self) -> Any:
        if self._mos is None:
            from memos.sdk import MemOS

            address = self.cluster_address()
            if address:
                self._mos = MemOS.connect(address).as_principal(self.principal)
            else:
                self._mos = MemOS.open(self.home, principal=self.principal)
        return self._mos

    def close(self) -> None:
        if self._mos is not None:
            self._mos.close()
            self._mos = None


STATE = CliState()


def open_cube(mos: Any, name: str) -> Any:
    """The cube ``name``, created (owned by the handle's principal) if it does not exist yet: plugin
    commands that keep their state in a cube of the user's choosing start from nothing."""
    from memos.errors import CubeNotFound

    try:
        return mos.cube(name)
    except CubeNotFound:
        return mos.create_cube(name)


def parse_kv(pairs: list[str] | None, field: str) -> dict[str, Any]:
    """``["session=3", "who=alice"]`` -> ``{"session": 3, "who": "alice"}`` (JSON values where they parse)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{field}: expected KEY=VALUE, got {pair!r}", field=field)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if key in out and field == "filter":
            prev = out[key] if isinstance(out[key], list) else [out[key]]
            value = prev + [value]
        out[key.strip()] = value
    return out


def _human(data: Any) -> str:
    if isinstance(data, dict) and "hits" in data:
        lines = [f"{h['score']:.4f}  {h['id']}  {h['text'][:100]}" for h in data["hits"]]
        return "\n".join(lines + [f"({len(data['hits'])} hits, {data.get('took_ms', 0):.1f} ms)"])
    if isinstance(data, dict) and set(data) >= {"id", "text", "version"}:
        return f"{data['id']}  v{data['version']}  [{data.get('state')}]  {data['text'][:200]}"
    return json.dumps(data, indent=2, default=str)


def emit(data: Any, as_json: bool) -> None:
    if as_json or STATE.json:
        sys.stdout.write(json.dumps(data, default=str) + "\n")
    else:
        sys.stdout.write(_human(data) + "\n")


def fail(exc: BaseException, as_json: bool) -> None:
    if isinstance(exc, MemosError):
        body = exc.to_dict()
    else:
        body = {"error": {"type": type(exc).__name__, "message": str(exc)}}
    msg = body["error"]["message"].splitlines()[0] if body["error"]["message"] else body["error"]["type"]
    sys.stderr.write(f"error: {body['error']['type']}: {msg}\n")
    if as_json or STATE.json:
        sys.stdout.write(json.dumps(body) + "\n")
    raise typer.Exit(1)


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body that returns JSON-able data: print it, map errors, close the handle."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = bool(kwargs.get("json_out", False))
        try:
            data = fn(*args, **kwargs)
            if data is not None:
                emit(data, as_json)
        except (MemosError, OSError) as exc:
            fail(exc, as_json)
        finally:
            STATE.close()

    return wrapper
