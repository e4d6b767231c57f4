"""The on-disk form of every parametric memory: ONE safetensors file, JSON in its metadata, no pickle.

A parametric memory is one blob in the blob store, so it is content-addressed (sha256), copied,
exported and rolled back like any other payload. Its tensors are the trained weights; its string
metadata holds:

====================  ==========================================================================
``memos.format``       ``"peft-lora"`` | ``"tokmem"`` | ``"pkm"``
``memos.version``      ``"1"``
``memos.manifest``     JSON: ``model`` (the base-model fingerprint), ``sources`` (``[{id, version}]``
                       of the plaintext memories it was trained from), ``config`` (format-specific:
                       the peft adapter config, the TokMem token names, the PKM shape ...),
                       ``training`` (steps, lr, seed, seconds, final loss)
====================  ==========================================================================

Loading checks the file's sha256 when the caller knows it (the payload records it) and the model
fingerprint against the engine that will use it: an artifact trained on another base model raises
:class:`~memos.errors.ModelMismatch` instead of silently producing nonsense.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memos.errors import CorruptPayload, InvalidInput, ModelMismatch

if TYPE_CHECKING:
    import torch

FORMATS = ("peft-lora", "tokmem", "pkm")
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class Artifact:
    """A parametric memory in memory: its format, tensors and manifest (see the module docstring)."""

    format: str
    tensors: dict[str, torch.Tensor]
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config", {}))

    @property
    def sources(self) -> list[dict[str, Any]]:
        return list(self.manifest.get("sources", []))


def file_sha256(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def fingerprint_dict(engine_or_fp: Any) -> dict[str, Any]:
    """The fingerprint of an engine (or a fingerprint object / dict) as a plain dict."""
    fp = engine_or_fp.fingerprint() if hasattr(engine_or_fp, "fingerprint") else engine_or_fp
    return dict(fp.model_dump() if hasattr(fp, "model_dump") else fp)


#: Fingerprint fields that name the runtime, not the base model: a weight delta trained on one base
#: model applies in any precision and on any engine serving those same weights (local, vLLM).
RUNTIME_FIELDS = frozenset({"dtype"})


def base_model(fp: Any) -> dict[str, Any]:
    """The base-model identity of a fingerprint: every field but the runtime ones."""
    d = fingerprint_dict(fp) if fp is not None else {}
    return {k: v for k, v in d.items() if k not in RUNTIME_FIELDS}


def check_model(expected: Any, manifest: dict[str, Any], what: str) -> None:
    """Raise :class:`ModelMismatch` unless ``manifest["model"]`` names the same base model as
    ``expected``'s fingerprint (same weights, tokenizer and shape; the runtime dtype may differ)."""
    want = fingerprint_dict(expected)
    got = manifest.get("model")
    if not isinstance(got, dict) or base_model(got) != base_model(want):
        raise ModelMismatch(base_model(want), base_model(got) if isinstance(got, dict) else got, what=what)


def write_artifact(path: str | os.PathLike[str], artifact: Artifact) -> dict[str, Any]:
    """Write ``artifact`` atomically to ``path``; returns ``{"bytes", "sha256"}`` of the file."""
    from safetensors.torch import save_file

    if artifact.format not in FORMATS:
        raise InvalidInput(f"unknown parametric format {artifact.format!r}", field="format")
    path = Path(path)
    metadata = {
        "format": "pt",  # what safetensors' torch loader (and peft) expect
        "memos.format": artifact.format,
        "memos.version": FORMAT_VERSION,
        "memos.manifest": json.dumps(artifact.manifest, sort_keys=True, separators=(",", ":")),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in artifact.tensors.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sha, size = file_sha256(path)
    return {"bytes": size, "sha256": sha}


def read_manifest(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any]]:
    """(format, manifest) without loading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (OSError, ValueError, RuntimeError) as exc:  # safetensors reports bad headers as these
        raise CorruptPayload(str(path), f"not a safetensors file: {exc}") from exc
    return _parse_meta(str(path), meta)


def _parse_meta(path: str, meta: dict[str, str]) -> tuple[str, dict[str, Any]]:
    fmt = meta.get("memos.format")
    if fmt not in FORMATS:
        raise CorruptPayload(path, f"not a memos parametric artifact (memos.format={fmt!r})")
    if meta.get("memos.version") != FORMAT_VERSION:
        raise CorruptPayload(path, f"unsupported artifact version {meta.get('memos.version')!r}")
    try:
        manifest = json.loads(meta.get("memos.manifest", "{}"))
    except json.JSONDecodeError as exc:
        raise CorruptPayload(path, f"manifest is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CorruptPayload(path, "manifest is not a JSON object")
    return str(fmt), manifest


def read_artifact(path: str | os.PathLike[str], *, expected_format: str | None = None,
                  sha256: str | None = None, model: Any = None) -> Artifact:
    """Load and check an artifact.

    Args:
        expected_format: raise :class:`InvalidInput` if the file holds another format.
        sha256: the file's recorded hash; a different hash raises :class:`CorruptPayload`.
        model: an engine or fingerprint; a different base model raises :class:`ModelMismatch`.
    """
    from safetensors.torch import load_file

    if sha256 is not None:
        got, _ = file_sha256(path)
        if got != sha256:
            raise CorruptPayload(str(path), f"sha256 {got} does not match the recorded {sha256}")
    fmt, manifest = read_manifest(path)
    if expected_format is not None and fmt != expected_format:
        raise InvalidInput(f"{path} holds a {fmt} artifact, not {expected_format}", field="format")
    if model is not None:
        check_model(model, manifest, what=f"{fmt} artifact {Path(path).name}")
    try:
        tensors = load_file(str(path))
    except (OSError, ValueError, RuntimeError) as exc:
        raise CorruptPayload(str(path), f"unreadable tensors: {exc}") from exc
    return Artifact(fmt, tensors, manifest)
