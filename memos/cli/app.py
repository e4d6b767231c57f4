"""Command definitions (DESIGN §4)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from memos.cli.common import JSON_OPT, STATE, command, parse_kv

# Typer needs Optional/List annotations evaluated at runtime; keep them as real types here.
# ruff: noqa: UP007, UP006, B008

cube_app = typer.Typer(help="Create, list, show, share and delete cubes.", no_args_is_help=True)
kv_app = typer.Typer(help="Activation memories (KV caches of a model).", no_args_is_help=True)
adapter_app = typer.Typer(help="Parametric memories (LoRA adapters, TokMem tokens, product-key memory).",
                          no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate retrieval on public benchmarks.", no_args_is_help=True)
plugins_app = typer.Typer(help="Installed plugins.", no_args_is_help=True)


def _mem(m: Any) -> dict[str, Any]:
    return m.public()


# --------------------------------------------------------------------------------------- general
@command
def init(home: Optional[Path] = typer.Option(None, "--home", help="Home directory to create."),
         json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Create a memos home (database, indexes, config)."""
    if home is not None:
        STATE.home = str(home)
    mos = STATE.mos()
    cfg = Path(mos.home) / "config.json"
    if not cfg.exists():
        cfg.write_text(json.dumps({"storage": {"backend": "sqlite"}, "embedder": {"name": "minilm"}}, indent=2))
    return {"home": mos.home, "config": str(cfg)}


@command
def status(json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Mode, workers, cubes and residency."""
    return STATE.mos().status()


# ----------------------------------------------------------------------------------------- cubes
@cube_app.command("create")
@command
def cube_create(name: str, owner: Optional[str] = typer.Option(None, "--owner", help="Owning principal."),
                description: str = typer.Option("", "--description"),
                ttl: Optional[float] = typer.Option(None, "--ttl", help="Default TTL of new memories (s)."),
                json_out: bool = JSON_OPT) -> dict[str, Any]:
    policy = {"default_ttl_s": ttl} if ttl else None
    return STATE.mos().create_cube(name, owner=owner, description=description, policy=policy) \
        .info().model_dump(mode="json")


@cube_app.command("list")
@command
def cube_list(json_out: bool = JSON_OPT) -> dict[str, Any]:
    return {"cubes": [c.model_dump(mode="json") for c in STATE.mos().list_cubes()]}


@cube_app.command("show")
@command
def cube_show(name: str, json_out: bool = JSON_OPT) -> dict[str, Any]:
    cube = STATE.mos().cube(name)
    return {**cube.info().model_dump(mode="json"), "stats": cube.stats()}


@cube_app.command("delete")
@command
def cube_delete(name: str, json_out: bool = JSON_OPT) -> dict[str, Any]:
    return {"deleted": STATE.mos().delete_cube(name), "cube": name}


@cube_app.command("grant")
@command
def cube_grant(name: str, principal: str,
               access: str = typer.Option("read", "--access", help="read | write | revoke"),
               json_out: bool = JSON_OPT) -> dict[str, Any]:
    return STATE.mos().grant(name, principal, access).model_dump(mode="json")


# -------------------------------------------------------------------------------------- memories
@command
def add(cube: str, text: str,
        meta: Optional[list[str]] = typer.Option(None, "--meta", help="KEY=VALUE metadata (repeatable)."),
        tag: Optional[list[str]] = typer.Option(None, "--tag", help="Tag (repeatable)."),
        event_time: Optional[str] = typer.Option(None, "--event-time", help="ISO time the fact refers to."),
        expires_at: Optional[str] = typer.Option(None, "--expires-at", help="ISO expiry time."),
        json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Add a plaintext memory."""
    m = STATE.mos().cube(cube).add(text, metadata=parse_kv(meta, "meta"), tags=tag or None,
                                   event_time=event_time, expires_at=expires_at)
    return _mem(m)


@command
def search(cube: str, query: str, top_k: int = typer.Option(10, "--top-k", "-k"),
           filter_: Optional[list[str]] = typer.Option(None, "--filter", help="KEY=VALUE (repeatable; any-of)."),
           since: Optional[str] = typer.Option(None, "--since", help="event_time >= this ISO time."),
           until: Optional[str] = typer.Option(None, "--until", help="event_time <= this ISO time."),
           include_archived: bool = typer.Option(False, "--include-archived"),
           at: Optional[int] = typer.Option(None, "--at", help="Search the cube as of this commit."),
           json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Hybrid search (dense + BM25, rank-fused)."""
    c = STATE.mos().cube(cube)
    if at is not None:
        c = c.at(at)
    t0 = time.perf_counter()
    hits = c.search(query, top_k=top_k, filters=parse_kv(filter_, "filter") or None,
                    time_range=(since, until) if since or until else None, include_archived=include_archived)
    return {"hits": [h.public() for h in hits], "took_ms": round((time.perf_counter() - t0) * 1000, 3)}


@command
def get(cube: str, memory_id: str, version: Optional[int] = typer.Option(None, "--version"),
        json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Show a memory (latest version, or --version N)."""
    return _mem(STATE.mos().cube(cube).get(memory_id, version=version))


@command
def history(cube: str, memory_id: str, json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Every version of a memory, oldest first."""
    return {"id": memory_id, "versions": [_mem(v) for v in STATE.mos().cube(cube).history(memory_id)]}


@command
def update(cube: str, memory_id: str, text: str,
           meta: Optional[list[str]] = typer.Option(None, "--meta", help="Replace metadata with KEY=VALUE pairs."),
           json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Write a new version of a memory."""
    metadata = parse_kv(meta, "meta") if meta else None
    return _mem(STATE.mos().cube(cube).update(memory_id, text, metadata=metadata))


@command
def delete(cube: str, memory_id: str, purge: bool = typer.Option(False, "--purge", help="Hard delete."),
           json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Archive a memory (or --purge: hard delete, leaving a tombstone in the log)."""
    m = STATE.mos().cube(cube).delete(memory_id, purge=purge)
    return {**_mem(m), "purged": purge}


@command
def rollback(cube: str, memory_id: str, to: int = typer.Option(..., "--to", help="Version to restore."),
             json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Write a new version equal to an old one."""
    return _mem(STATE.mos().cube(cube).rollback(memory_id, to))


@command
def list_(cube: str, offset: int = typer.Option(0, "--offset"), limit: int = typer.Option(100, "--limit"),
          include_archived: bool = typer.Option(False, "--include-archived"),
          json_out: bool = JSON_OPT) -> dict[str, Any]:
    """List a cube's memories (latest versions)."""
    ms = STATE.mos().cube(cube).list(offset=offset, limit=limit, include_archived=include_archived)
    return {"memories": [_mem(m) for m in ms], "offset": offset, "limit": limit}


@command
def log(cube: str, after: int = typer.Option(0, "--after"), limit: Optional[int] = typer.Option(None, "--limit"),
        json_out: bool = JSON_OPT) -> dict[str, Any]:
    """The cube's operation log."""
    return {"entries": [e.model_dump(mode="json") for e in STATE.mos().cube(cube).log(after=after, limit=limit)]}


@command
def export(cube: str, out: Path = typer.Option(..., "--out", help="Bundle file to write."),
           json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Write a portable bundle of a cube (log, versions, vectors, payloads)."""
    return STATE.mos().export_cube(cube, out)


@command
def import_(path: Path, as_: Optional[str] = typer.Option(None, "--as", help="Import under another name."),
            json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Import a bundle written by ``memos export``."""
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        progress.add_task(f"importing {path.name}", total=None)
        cube = STATE.mos().import_cube(path, name=as_)
    return cube.info().model_dump(mode="json")


# ------------------------------------------------------------------------------ activation / models
@kv_app.command("create")
@command
def kv_create(cube: str, file: Path = typer.Option(..., "--file", help="Text file whose KV cache to store."),
              engine: Optional[str] = typer.Option(None, "--engine", help="Model engine (default: local)."),
              json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Build and store the KV cache of a text as an activation memory."""
    from memos.errors import InvalidInput

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {file}: {exc}", field="file") from exc
    return _mem(STATE.mos().cube(cube).add_activation(text, engine=engine, metadata={"file": file.name}))


@adapter_app.command("train")
@command
def adapter_train(cube: str,
                  memories: Optional[str] = typer.Option(None, "--memories", help="Comma-separated memory ids."),
                  all_: bool = typer.Option(False, "--all", help="Every live plaintext memory of the cube."),
                  format: str = typer.Option("lora", "--format", help="lora | tokmem | pkm"),
                  steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (format default)."),
                  rank: Optional[int] = typer.Option(None, "--rank", help="LoRA rank."),
                  lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate."),
                  seed: int = typer.Option(0, "--seed"),
                  engine: Optional[str] = typer.Option(None, "--engine", help="Model engine (default: local)."),
                  json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Distil plaintext memories into a parametric memory (kind parametric, sources in its provenance)."""
    from memos.errors import InvalidInput

    if bool(memories) == all_:
        raise InvalidInput("give either --memories ID,... or --all", field="memories")
    ids: list[str] | str = "all" if all_ else [m.strip() for m in (memories or "").split(",") if m.strip()]
    from rich.console import Console
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True)) as progress:
        progress.add_task(f"training {format} on {cube}", total=None)
        mem = STATE.mos().cube(cube).train_adapter(ids, format=format, steps=steps, rank=rank, lr=lr,
                                                   engine=engine, seed=seed)
    return _mem(mem)


@command
def generate(cube: str, prompt: str, kv: Optional[list[str]] = typer.Option(None, "--kv", help="Activation memory id."),
             adapter: Optional[list[str]] = typer.Option(None, "--adapter", help="Parametric memory id."),
             no_retrieve: bool = typer.Option(False, "--no-retrieve", help="Do not add retrieved memories."),
             max_tokens: int = typer.Option(64, "--max-tokens"),
             engine: Optional[str] = typer.Option(None, "--engine"),
             json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Answer a prompt with the cube's memories (KV prefix + retrieved memories + prompt)."""
    out = STATE.mos().generate(cube, prompt, kv=kv or None, adapters=adapter or None, retrieve=not no_retrieve,
                               max_tokens=max_tokens, engine=engine)
    return {"text": out.text, "ttft_ms": round(out.ttft_ms, 3), "used": out.used}


@command
def migrate(cube: str, memory_id: str,
            to: str = typer.Option(..., "--to", help="plaintext | activation | parametric"),
            engine: Optional[str] = typer.Option(None, "--engine"),
            format: str = typer.Option("lora", "--format", help="With --to parametric: lora | tokmem | pkm"),
            json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Move a memory to another kind (comma-separated ids with --to activation: one shared KV prefix)."""
    ids = memory_id.split(",") if "," in memory_id else memory_id
    return _mem(STATE.mos().migrate(cube, ids, to, engine=engine, format=format))


# ---------------------------------------------------------------------------------------- eval
@eval_app.command("locomo")
@command
def eval_locomo(data: Path = typer.Option(..., "--data", help="LoCoMo JSON file."),
                conversations: Optional[str] = typer.Option(None, "--conversations", help="e.g. 0,1,2"),
                top_k: int = typer.Option(10, "--top-k"),
                audit: Optional[Path] = typer.Option(None, "--audit", help="Audit file with corrected evidence."),
                json_out: bool = JSON_OPT) -> dict[str, Any]:
    """Retrieval recall on LoCoMo (one memory per turn), DESIGN §7."""
    from memos.eval.locomo import run_locomo

    convs = [int(c) for c in conversations.split(",")] if conversations else None
    return run_locomo(str(data), conversations=convs, top_k=top_k, audit=str(audit) if audit else None,
                      progress=not (json_out or STATE.json))


# ------------------------------------------------------------------------------------- plugins
@plugins_app.command("list")
@command
def plugins_list(json_out: bool = JSON_OPT) -> dict[str, Any]:
    from memos.plugins import loaded_plugins, registry, unavailable_plugins

    kinds = ("backends", "vector_indexes", "blob_stores", "embedders", "engines", "policies", "runtimes")
    return {"plugins": loaded_plugins(), "unavailable": unavailable_plugins(),
            "registered": {k: sorted(registry(k)) for k in kinds}}


def build_app() -> typer.Typer:
    app = typer.Typer(name="memos", help="memos: a memory operating system for LLM agents.",
                      no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _global(home: Optional[Path] = typer.Option(None, "--home", envvar="MEMOS_HOME",
                                                    help="memos home directory (default ~/.memos)."),
                principal: Optional[str] = typer.Option(None, "--principal", envvar="MEMOS_PRINCIPAL",
                                                        help="Act on behalf of this principal."),
                address: Optional[str] = typer.Option(None, "--address", envvar="MEMOS_ADDRESS",
                                                      help="A memos cluster (ray://HOST:10001 or auto)."),
                json_out: bool = typer.Option(False, "--json", help="JSON output for every command.")) -> None:
        STATE.home = str(home) if home else None
        STATE.address = address
        STATE.principal = principal
        STATE.json = json_out

    app.command()(init)
    app.command()(status)
    app.add_typer(cube_app, name="cube")
    for fn, name in ((add, "add"), (search, "search"), (get, "get"), (history, "history"), (update, "update"),
                     (delete, "delete"), (rollback, "rollback"), (list_, "list"), (log, "log"),
                     (export, "export"), (import_, "import")):
        app.command(name)(fn)
    app.add_typer(kv_app, name="kv")
    app.add_typer(adapter_app, name="adapter")
    app.command("generate")(generate)
    app.command("migrate")(migrate)
    app.add_typer(eval_app, name="eval")
    app.add_typer(plugins_app, name="plugins")
    from memos.server.cli import register as register_server_commands

    register_server_commands(app)
    from memos.reading.cli import register as register_reading_commands

    register_reading_commands(app)
    from memos.plugins import get_manager

    get_manager().hook.memos_register_commands(app=app)
    return app
