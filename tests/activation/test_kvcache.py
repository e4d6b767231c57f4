"""KV cache value objects and the safetensors-kv file format.

The format tests use small synthetic caches (fast); the ``slow`` ones use the real local model.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

from memos.activation import KVCache, ModelFingerprint, load_kv, save_kv, token_ids_sha256
from memos.errors import CorruptPayload, ModelMismatch

if TYPE_CHECKING:
    from memos.engines.local import LocalEngine

FP = ModelFingerprint(
    model_id="toy",
    dtype="float32",
    n_layers=3,
    n_kv_heads=2,
    head_dim=4,
    tokenizer_sha256="t" * 64,
    weights_sha256="w" * 64,
)


def toy_cache(tokens: int = 5, fp: ModelFingerprint = FP, seed: int = 0) -> KVCache:
    g = torch.Generator().manual_seed(seed)
    shape = (fp.n_kv_heads, tokens, fp.head_dim)
    layers = tuple(
        (torch.randn(shape, generator=g), torch.randn(shape, generator=g)) for _ in range(fp.n_layers)
    )
    return KVCache(layers=layers, token_ids=tuple(range(100, 100 + tokens)), fingerprint=fp)


def assert_same(a: KVCache, b: KVCache) -> None:
    assert a.token_ids == b.token_ids
    assert a.fingerprint == b.fingerprint
    assert a.tokens_sha256 == b.tokens_sha256
    for (ka, va), (kb, vb) in zip(a.layers, b.layers, strict=True):
        assert torch.equal(ka, kb) and torch.equal(va, vb)


@pytest.fixture
def saved(tmp_path: Path) -> tuple[KVCache, Path, dict]:
    cache = toy_cache()
    path = tmp_path / "kv.safetensors"
    return cache, path, save_kv(cache, path)


# -- value objects ----------------------------------------------------------------------------


def test_cache_reports_tokens_bytes_and_hash() -> None:
    cache = toy_cache(tokens=7)
    assert cache.tokens == 7
    assert cache.nbytes == 3 * 2 * (2 * 7 * 4) * 4
    assert cache.tokens_sha256 == token_ids_sha256(range(100, 107))


@pytest.mark.parametrize(
    "change",
    [{"n_layers": 4}, {"n_kv_heads": 3}, {"head_dim": 8}, {"dtype": "float16"}],
)
def test_cache_rejects_tensors_that_disagree_with_fingerprint(change: dict) -> None:
    good = toy_cache()
    with pytest.raises(ValueError, match="inconsistent KVCache"):
        KVCache(layers=good.layers, token_ids=good.token_ids, fingerprint=FP.model_copy(update=change))


def test_cache_rejects_token_count_that_disagrees_with_tensors() -> None:
    good = toy_cache(tokens=5)
    with pytest.raises(ValueError, match="shape"):
        KVCache(layers=good.layers, token_ids=good.token_ids[:4], fingerprint=FP)


def test_fingerprint_is_frozen_and_json_roundtrips() -> None:
    with pytest.raises(ValueError):
        FP.n_layers = 9  # type: ignore[misc]
    assert ModelFingerprint.model_validate_json(FP.to_json()) == FP


# -- save / load ------------------------------------------------------------------------------


def test_save_returns_payload_record(saved: tuple[KVCache, Path, dict]) -> None:
    cache, path, info = saved
    data = path.read_bytes()
    assert info["format"] == "safetensors-kv"
    assert info["bytes"] == len(data)
    assert info["sha256"] == hashlib.sha256(data).hexdigest()
    assert info["tokens"] == cache.tokens
    assert info["tokens_sha256"] == cache.tokens_sha256
    assert info["model"] == FP.model_dump()


def test_saved_file_is_safetensors_with_json_metadata(saved: tuple[KVCache, Path, dict]) -> None:
    cache, path, _ = saved
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])  # plain JSON header: no pickle anywhere
    meta = header["__metadata__"]
    assert json.loads(meta["token_ids"]) == list(cache.token_ids)
    assert json.loads(meta["fingerprint"]) == FP.model_dump()
    assert {"k.0", "v.0", "k.2", "v.2"} <= header.keys()


@pytest.mark.parametrize("with_sha", [False, True])
def test_roundtrip(saved: tuple[KVCache, Path, dict], with_sha: bool) -> None:
    cache, path, info = saved
    loaded = load_kv(path, FP, sha256=info["sha256"] if with_sha else None)
    assert_same(cache, loaded)


def test_save_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "kv.safetensors"
    save_kv(toy_cache(seed=1), path)
    info = save_kv(toy_cache(seed=2), path)
    assert [p.name for p in path.parent.iterdir()] == ["kv.safetensors"]  # no temp files left
    assert_same(load_kv(path, FP, sha256=info["sha256"]), toy_cache(seed=2))


@pytest.mark.parametrize(
    "change",
    [{"dtype": "bfloat16"}, {"n_layers": 4}, {"model_id": "other"}, {"tokenizer_sha256": "x" * 64}],
)
def test_load_with_other_fingerprint_raises_model_mismatch(
    saved: tuple[KVCache, Path, dict], change: dict
) -> None:
    _, path, _ = saved
    expected = FP.model_copy(update=change)
    with pytest.raises(ModelMismatch) as info:
        load_kv(path, expected)
    assert info.value.expected == expected
    assert info.value.got == FP
    for name in change:
        assert name in str(info.value)


@pytest.mark.parametrize("keep", [0, 7, 20, 200, -1])
def test_truncated_file_raises_corrupt_payload(saved: tuple[KVCache, Path, dict], keep: int) -> None:
    _, path, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    with pytest.raises(CorruptPayload) as info:
        load_kv(path, FP)
    assert info.value.path == str(path)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["data_start", "data_middle", "last_byte"])
@pytest.mark.parametrize("with_sha", [False, True])
def test_flipped_tensor_bytes_raise_corrupt_payload(
    saved: tuple[KVCache, Path, dict], where: str, with_sha: bool
) -> None:
    _, path, info = saved
    size = path.stat().st_size
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    offset = {"data_start": 8 + n, "data_middle": (8 + n + size) // 2, "last_byte": size - 1}[where]
    _flip(path, offset)
    with pytest.raises(CorruptPayload, match="sha256"):
        load_kv(path, FP, sha256=info["sha256"] if with_sha else None)


def test_flipped_header_byte_raises_corrupt_payload(saved: tuple[KVCache, Path, dict]) -> None:
    _, path, _ = saved
    _flip(path, 8)  # the header's opening brace
    with pytest.raises(CorruptPayload, match="header"):
        load_kv(path, FP)


def test_altered_token_ids_raise_corrupt_payload(saved: tuple[KVCache, Path, dict]) -> None:
    _, path, _ = saved
    data = path.read_bytes()
    # Same length, still valid JSON: only the token hash can tell.
    altered = data.replace(b"[100,101,", b"[100,109,", 1)
    assert altered != data
    path.write_bytes(altered)
    with pytest.raises(CorruptPayload, match="tokens_sha256"):
        load_kv(path, FP)


def test_wrong_recorded_sha_raises_corrupt_payload(saved: tuple[KVCache, Path, dict]) -> None:
    _, path, _ = saved
    with pytest.raises(CorruptPayload, match="sha256"):
        load_kv(path, FP, sha256="0" * 64)


def test_missing_file_raises_corrupt_payload(tmp_path: Path) -> None:
    with pytest.raises(CorruptPayload, match="cannot read"):
        load_kv(tmp_path / "absent.safetensors", FP)


def test_plain_safetensors_file_is_not_a_kv_payload(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"hello": "world"})
    with pytest.raises(CorruptPayload, match="not a safetensors-kv"):
        load_kv(path, FP)


# -- with the real model ----------------------------------------------------------------------


@pytest.mark.slow
def test_real_cache_roundtrips_through_disk(engine: LocalEngine, tmp_path: Path) -> None:
    cache = engine.build_kv("Alice keeps a purple cat called Zorblax in her flat in Lisbon.")
    fp = engine.fingerprint()
    assert cache.fingerprint == fp
    assert (fp.n_layers, fp.n_kv_heads, fp.head_dim, fp.dtype) == (30, 3, 64, "float32")
    info = save_kv(cache, tmp_path / "kv.safetensors")
    assert info["bytes"] > cache.nbytes  # tensors plus header
    assert cache.nbytes / cache.tokens == 2 * 30 * 3 * 64 * 4  # K and V, fp32
    assert_same(cache, load_kv(tmp_path / "kv.safetensors", fp, sha256=info["sha256"]))


@pytest.mark.slow
def test_real_cache_refused_by_other_model_shape(engine: LocalEngine, tmp_path: Path) -> None:
    info = save_kv(engine.build_kv("hello there"), tmp_path / "kv.safetensors")
    other = engine.fingerprint().model_copy(update={"n_layers": 24, "dtype": "float16"})
    with pytest.raises(ModelMismatch) as err:
        load_kv(tmp_path / "kv.safetensors", other, sha256=info["sha256"])
    assert err.value.expected == other and err.value.got == engine.fingerprint()
