"""Configuration (pydantic v2). The one module that reads environment variables.

Resolution order: explicit arguments > environment (``MEMOS_*``) > ``$MEMOS_HOME/config.json`` > defaults.
Every default works offline on a laptop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from memos.errors import InvalidInput


class EmbedderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "minilm"
    """Embedder plugin name: ``minilm`` (local, offline) or ``openai`` (an embeddings endpoint)."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the embedder (``precision``, ``base_url``, ``model``, ``api_key`` ...)."""


class IndexConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "faiss"
    """Vector index plugin name."""
    hnsw_threshold: int = 20_000
    """A cube's dense index switches from exact flat search to HNSW past this many vectors."""
    search_depth: int = 100
    """Candidates taken from each retriever (dense, BM25) before score fusion."""
    dense_weight: float = Field(0.6, ge=0.0, le=1.0)
    """Weight of the dense score in the fused score (the rest goes to BM25)."""
    part_weight: float = Field(0.75, ge=0.0, le=1.0)
    """Within the dense score, the weight of a memory's best sentence (part) against its whole-memory
    vector (see :mod:`memos.retrieval.parts`)."""
    fusion: Literal["score", "rrf"] = "score"
    """``score``: convex combination of normalised scores (default, better on LoCoMo: 0.73 vs 0.59
    recall@10); ``rrf``: reciprocal rank fusion (k=60) of the same candidate lists."""


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str = "sqlite"
    """Storage backend plugin name: ``sqlite`` (embedded default), ``redis``, ``postgres``."""
    url: str | None = None
    """Backend URL (redis://..., postgresql://...). SQLite uses ``<home>/memos.db``."""
    synchronous: str = "FULL"
    """SQLite ``synchronous`` pragma; FULL makes every acknowledged write survive power loss."""


class ResidencyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host_bytes: int = 2 * 1024**3
    """Byte budget for KV caches and adapters resident in host RAM."""
    device_bytes: int = 0
    """Byte budget on the accelerator (0 where there is none)."""
    policy: str = "lru"
    """Eviction policy plugin name."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    home: Path
    """Directory holding the database, indexes, payloads and models."""
    storage: StorageConfig = Field(default_factory=StorageConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    index: IndexConfig = Field(default_factory=IndexConfig)
    residency: ResidencyConfig = Field(default_factory=ResidencyConfig)
    engine: str = "local"
    """Default model engine for activation/parametric memories: ``local``, ``vllm`` or ``openai``."""
    blobs_dir: Path | None = None
    """Payload blob store folder (default ``<home>/blobs``; cluster workers share one)."""
    models_dir: Path | None = None
    """Where converted model weights live (default ``<home>/models``; ``MEMOS_MODELS_DIR``)."""
    principal: str | None = None
    """Principal the handle acts for; None = the local administrator of this home (no ACL checks)."""


def default_home() -> Path:
    env = os.environ.get("MEMOS_HOME")
    return Path(env).expanduser() if env else Path.home() / ".memos"


def load_settings(home: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    root = Path(home).expanduser() if home is not None else default_home()
    data: dict[str, Any] = {}
    cfg = root / "config.json"
    if cfg.exists():
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(f"{cfg}: not valid JSON ({exc})", field="config") from exc
    if os.environ.get("MEMOS_STORAGE"):
        data.setdefault("storage", {})["backend"] = os.environ["MEMOS_STORAGE"]
    if os.environ.get("MEMOS_STORAGE_URL"):
        data.setdefault("storage", {})["url"] = os.environ["MEMOS_STORAGE_URL"]
    if os.environ.get("MEMOS_MODELS_DIR"):
        data["models_dir"] = os.environ["MEMOS_MODELS_DIR"]
    if os.environ.get("MEMOS_PRINCIPAL"):
        data["principal"] = os.environ["MEMOS_PRINCIPAL"]
    for key, value in overrides.items():
        if value is not None:
            data[key] = value
    data["home"] = root
    try:
        settings = Settings.model_validate(data)
        if settings.models_dir is None:
            settings.models_dir = root / "models"
        return settings
    except ValueError as exc:
        raise InvalidInput(f"invalid configuration: {exc}", field="config") from exc


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str) -> list[str] | None:
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [p.strip() for p in raw.split(",") if p.strip()]
