"""LocalEngine: conversion, generation, KV prefixes (exactness, copy-on-read), adapters.

Model tests are marked ``slow``; the session shares one converted folder and one loaded engine.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch

from memos.activation import KVCache, load_kv, save_kv
from memos.errors import ModelMismatch
from memos.engines import Engine, Generation
from memos.engines import convert as convert_mod

if TYPE_CHECKING:
    from memos.engines.local import LocalEngine

DOC = (
    "Alice keeps a purple cat called Zorblax. Zorblax sleeps on the red sofa in Alice's flat "
    "in Lisbon and eats sardines every Friday. "
)
QUESTION = " Question: What colour is Zorblax? Answer:"


@pytest.fixture(scope="session")
def doc_cache(engine: LocalEngine) -> KVCache:
    return engine.build_kv(DOC)


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


# -- no model needed --------------------------------------------------------------------------


def test_importing_engines_and_activation_does_not_import_torch() -> None:
    code = (
        "import sys, memos.engines, memos.activation, memos.engines.base;"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def _fake_convert(calls: list[Path]) -> Callable[[Path, Path], dict[str, Any]]:
    def fake(gguf: Path, out: Path) -> dict[str, Any]:
        calls.append(out)
        out.mkdir(parents=True)
        (out / "model.safetensors").write_bytes(b"x" * 10)
        threading.Event().wait(0.3)  # long enough for a second caller to queue on the lock
        manifest = {"version": convert_mod.MANIFEST_VERSION, "files": {"model.safetensors": 10}}
        (out / convert_mod.MANIFEST).write_text(json.dumps(manifest))
        return manifest

    return fake


def test_concurrent_conversion_happens_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(convert_mod, "_convert", _fake_convert(calls))
    results: list[convert_mod.ConvertedModel] = []

    def worker() -> None:
        results.append(convert_mod.ensure_converted(tmp_path, gguf=tmp_path / "src.gguf"))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(r.converted for r in results) == [False, False, True]
    assert {r.path for r in results} == {tmp_path / convert_mod.MODEL_ID}
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert leftovers == []


def test_incomplete_folder_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(convert_mod, "_convert", _fake_convert(calls))
    broken = tmp_path / convert_mod.MODEL_ID
    broken.mkdir()
    (broken / "model.safetensors").write_bytes(b"partial")  # no manifest
    ready = convert_mod.ensure_converted(tmp_path, gguf=tmp_path / "src.gguf")
    assert ready.converted and len(calls) == 1
    assert (broken / "model.safetensors").read_bytes() == b"x" * 10


def test_size_mismatch_invalidates_manifest(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    manifest = {"version": convert_mod.MANIFEST_VERSION, "files": {"model.safetensors": 4}}
    (tmp_path / convert_mod.MANIFEST).write_text(json.dumps(manifest))
    assert convert_mod.read_manifest(tmp_path) is None


# -- loading ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_engine_satisfies_protocol_and_fingerprint(engine: LocalEngine) -> None:
    assert isinstance(engine, Engine)
    fp = engine.fingerprint()
    assert fp.model_id == "smollm2-135m-instruct"
    assert (fp.n_layers, fp.n_kv_heads, fp.head_dim, fp.dtype) == (30, 3, 64, "float32")
    assert len(fp.tokenizer_sha256) == 64 and len(fp.weights_sha256) == 64
    config = json.loads((engine.model_path / "config.json").read_text())
    assert "quantization_config" not in config  # reloads as plain fp32, no gguf needed


@pytest.mark.slow
def test_second_load_skips_conversion(engine: LocalEngine, models_dir: Path) -> None:
    from memos.engines import LocalEngine

    before = _snapshot(engine.model_path)
    again = LocalEngine(models_dir)
    assert again.converted is False
    assert again.load_ms < 1500, f"reload took {again.load_ms:.0f} ms"
    assert _snapshot(engine.model_path) == before  # nothing rewritten
    assert again.fingerprint() == engine.fingerprint()


# -- generation -------------------------------------------------------------------------------


@pytest.mark.slow
def test_greedy_generation_is_deterministic(engine: LocalEngine) -> None:
    a = engine.generate("The capital of France is", max_tokens=8)
    b = engine.generate("The capital of France is", max_tokens=8)
    assert isinstance(a, Generation)
    assert a.token_ids == b.token_ids and a.text == b.text
    assert "Paris" in a.text
    assert a.tokens == len(a.token_ids) <= 8
    assert 0 < a.ttft_ms <= a.total_ms
    assert a.used["prompt_tokens"] == engine.count_tokens("The capital of France is")


@pytest.mark.slow
def test_sampling_is_reproducible_per_seed(engine: LocalEngine) -> None:
    runs = [engine.generate("Once upon a time", max_tokens=12, temperature=1.0, seed=s) for s in (7, 7)]
    assert runs[0].token_ids == runs[1].token_ids


@pytest.mark.slow
def test_chat_flag_uses_template_and_stops_at_end_of_turn(engine: LocalEngine) -> None:
    out = engine.generate("What is the capital of France?", chat=True, max_tokens=40)
    assert "Paris" in out.text
    assert out.used["stop"] == "eos" and out.used["chat"] is True
    assert "<|im_end|>" not in out.text


# -- KV prefixes ------------------------------------------------------------------------------


@pytest.mark.slow
def test_reloaded_cache_logits_equal_full_recompute(
    engine: LocalEngine, doc_cache: KVCache, tmp_path: Path
) -> None:
    info = save_kv(doc_cache, tmp_path / "doc.safetensors")
    cache = load_kv(tmp_path / "doc.safetensors", engine.fingerprint(), sha256=info["sha256"])
    cont = engine.encode(QUESTION)
    with_kv = engine.forward_logits(cont, kv=[cache])
    full = engine.forward_logits(list(cache.token_ids) + cont)[-len(cont) :]
    assert with_kv.shape == full.shape == (len(cont), 49152)
    assert torch.allclose(with_kv, full, atol=1e-3, rtol=1e-4), (with_kv - full).abs().max()
    assert torch.equal(with_kv.argmax(-1), full.argmax(-1))


@pytest.mark.slow
def test_greedy_output_same_with_and_without_cache(engine: LocalEngine, doc_cache: KVCache) -> None:
    with_kv = engine.generate(QUESTION, kv=[doc_cache], max_tokens=16)
    without = engine.generate_ids(list(doc_cache.token_ids) + engine.encode(QUESTION), max_tokens=16)
    assert with_kv.token_ids == without.token_ids
    assert with_kv.text == without.text
    assert with_kv.used["prefix_tokens"] == doc_cache.tokens
    assert with_kv.used["kv"] == [doc_cache.tokens_sha256]


@pytest.mark.slow
def test_prefix_and_prompt_tokenised_separately(engine: LocalEngine) -> None:
    # "sun" + "flower" tokenise differently joined than apart: the cache path must use the
    # separate ids, so generate(kv) matches generate_ids(prefix_ids + prompt_ids).
    cache = engine.build_kv("My favourite plant is the sun")
    joined = engine.encode("My favourite plant is the sunflower")
    assert joined != list(cache.token_ids) + engine.encode("flower")  # the case worth testing
    with_kv = engine.generate("flower", kv=[cache], max_tokens=6)
    apart = engine.generate_ids(list(cache.token_ids) + engine.encode("flower"), max_tokens=6)
    assert with_kv.token_ids == apart.token_ids


@pytest.mark.slow
def test_chat_prefix_matches_full_template(engine: LocalEngine) -> None:
    cache = engine.build_kv(DOC, chat=True)
    with_kv = engine.generate("What colour is Zorblax?", kv=[cache], chat=True, max_tokens=12)
    rendered = engine.tokenizer.apply_chat_template(
        [{"role": "system", "content": DOC}, {"role": "user", "content": "What colour is Zorblax?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    full = engine.generate_ids(engine.encode(rendered), max_tokens=12)
    assert with_kv.token_ids == full.token_ids


@pytest.mark.slow
def test_empty_prompt_continues_the_prefix(engine: LocalEngine, doc_cache: KVCache) -> None:
    with_kv = engine.generate("", kv=[doc_cache], max_tokens=5)
    without = engine.generate_ids(list(doc_cache.token_ids), max_tokens=5)
    assert with_kv.token_ids == without.token_ids


@pytest.mark.slow
def test_cache_is_copy_on_read(engine: LocalEngine, doc_cache: KVCache, tmp_path: Path) -> None:
    path = tmp_path / "doc.safetensors"
    info = save_kv(doc_cache, path)
    cache = load_kv(path, engine.fingerprint(), sha256=info["sha256"])
    originals = [(k.clone(), v.clone()) for k, v in cache.layers]
    first = engine.generate(QUESTION, kv=[cache], max_tokens=8)
    second = engine.generate(QUESTION, kv=[cache], max_tokens=8)
    assert first.token_ids == second.token_ids
    assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"]
    for (k, v), (k0, v0) in zip(cache.layers, originals, strict=True):
        assert torch.equal(k, k0) and torch.equal(v, v0)
        assert k.shape[1] == cache.tokens  # not grown by the generated tokens


@pytest.mark.slow
def test_cache_from_other_model_is_refused(engine: LocalEngine, doc_cache: KVCache) -> None:
    other = doc_cache.fingerprint.model_copy(update={"weights_sha256": "0" * 64})
    foreign = KVCache(layers=doc_cache.layers, token_ids=doc_cache.token_ids, fingerprint=other)
    with pytest.raises(ModelMismatch) as err:
        engine.generate(QUESTION, kv=[foreign])
    assert err.value.expected == engine.fingerprint() and err.value.got == other


@pytest.mark.slow
def test_more_than_one_prefix_is_refused(engine: LocalEngine, doc_cache: KVCache) -> None:
    with pytest.raises(ValueError, match="one KV prefix"):
        engine.generate(QUESTION, kv=[doc_cache, doc_cache])


@pytest.mark.slow
def test_cache_cuts_time_to_first_token(engine: LocalEngine) -> None:
    cache = engine.build_kv(DOC * 8)  # ~330 tokens
    prompt_ids = engine.encode(QUESTION)
    full = list(cache.token_ids) + prompt_ids
    cold = min(engine.generate_ids(full, max_tokens=1).ttft_ms for _ in range(2))
    warm = min(engine.generate(QUESTION, kv=[cache], max_tokens=1).ttft_ms for _ in range(2))
    assert warm < cold


@pytest.mark.slow
def test_too_long_input_is_refused(engine: LocalEngine) -> None:
    with pytest.raises(ValueError, match="context"):
        engine.generate_ids([42] * 8190, max_tokens=8)


# -- adapters ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_adapter_changes_output_and_switches_off(engine: LocalEngine, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(engine.model_path, local_files_only=True)
    lora = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")

    plain = engine.generate("The capital of France is", max_tokens=8)
    adapted = engine.generate("The capital of France is", adapters=[tmp_path / "adapter"], max_tokens=8)
    after = engine.generate("The capital of France is", max_tokens=8)
    assert adapted.token_ids != plain.token_ids
    assert adapted.used["adapters"] == [str(tmp_path / "adapter")]
    assert after.token_ids == plain.token_ids  # base model back once adapters are not asked for
