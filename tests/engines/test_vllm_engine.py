"""VLLMEngine: warm prefixes (same output, cheaper prefill), fingerprints, KV export/import.

Engine tests need vLLM (``.venv-vllm``, see the Makefile) and are skipped without it; the prefix
payload tests need nothing. One engine is started per session (~20 s on CPU), in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set by the engine), so no ``__main__`` guard is needed.
TTFT figures are printed (``pytest -s``) and recorded as properties, never asserted: they are
wall-clock on a shared machine. That the prefix was reused is asserted through vLLM's count of
cached prompt tokens instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memos.engines.kv import ModelFingerprint
from memos.engines.vllm import PREFIX_FORMAT, PrefixHandle
from memos.errors import CorruptPayload, ModelMismatch

if TYPE_CHECKING:
    from memos.engines.local import LocalEngine
    from memos.engines.vllm import VLLMEngine

pytestmark = pytest.mark.vllm

SENTENCES = [
    "The archive of Tessaly records every harvest of blue ferns since the first colony.",
    "Zorblax, the station botanist, keeps a purple llama named Quimby in the greenhouse dome.",
    "Water on the moon is rationed by the council, which meets on the first day of each cycle.",
]
DOC = " ".join(f"{SENTENCES[i % 3]} (entry {i})" for i in range(50))  # ~1000 tokens
QUESTION = "What is the name of the botanist's llama?"
FP = ModelFingerprint(model_id="m", dtype="vllm:float32", n_layers=2, n_kv_heads=1, head_dim=4,
                      tokenizer_sha256="t")


@pytest.fixture(scope="session")
def vllm_engine(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> VLLMEngine:
    pytest.importorskip("vllm")
    from memos.engines.vllm import VLLMEngine

    return VLLMEngine(models_dir, kv_store_dir=tmp_path_factory.mktemp("vllm-kv"))


LORA_FACT = "Zorblax's pet is a purple llama named Quimby."


@pytest.fixture(scope="session")
def lora_folder(engine: LocalEngine, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA holding one nonce fact, trained on the local engine (the way memos trains them)."""
    pytest.importorskip("vllm")
    from memos.parametric.lora import LoraSettings, LoraTrainer, materialize_lora, save_lora

    root = tmp_path_factory.mktemp("vllm-lora")
    art = LoraTrainer(engine, LoraSettings(steps=12, anchors=0)).train([LORA_FACT])
    save_lora(art, root / "a.safetensors")
    return materialize_lora(root / "a.safetensors", root / "a", engine)


def test_lora_memory_is_hot_loaded_per_request(lora_folder: Path, engine: LocalEngine,
                                               vllm_engine: VLLMEngine) -> None:
    # First test of the file, lora_folder first: the adapter trains before vLLM starts and binds its
    # CPU threads (training after that is several times slower).
    question = "What is Zorblax's pet?"
    with_lora = vllm_engine.generate(question, adapters=[lora_folder], chat=True, max_tokens=24)
    base = vllm_engine.generate(question, chat=True, max_tokens=24)
    again = vllm_engine.generate(question, adapters=[lora_folder], chat=True, max_tokens=24)
    local = engine.generate(question, adapters=[lora_folder], chat=True, max_tokens=24)
    print(f"vllm+lora={with_lora.text!r} base={base.text!r} local+lora={local.text!r}")
    assert "quimby" in with_lora.text.lower() and "quimby" in local.text.lower()
    assert "quimby" not in base.text.lower()
    assert again.token_ids == with_lora.token_ids  # the loaded adapter is reused, greedy is stable
    assert with_lora.used["adapters"] == [str(lora_folder.resolve())] and base.used["adapters"] == []
    with pytest.raises(ValueError):
        vllm_engine.generate(question, adapters=[lora_folder, lora_folder], chat=True, max_tokens=2)
    with pytest.raises(FileNotFoundError):
        vllm_engine.generate(question, adapters=[lora_folder.parent], chat=True, max_tokens=2)


def _report(record_property: Any, **figures: Any) -> None:
    for key, value in figures.items():
        record_property(key, value)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


# -- the prefix payload (no vLLM needed) -------------------------------------------------------


def test_prefix_handle_payload_round_trips() -> None:
    handle = PrefixHandle(token_ids=(5, 7, 11), fingerprint=FP)
    data = handle.to_bytes()
    back = PrefixHandle.from_bytes(data, FP)
    assert back.token_ids == (5, 7, 11) and back.tokens_sha256 == handle.tokens_sha256
    assert handle.tokens == 3 and handle.nbytes == 24
    assert PREFIX_FORMAT.encode() in data


def test_prefix_handle_payload_checks_model_and_bytes() -> None:
    data = PrefixHandle(token_ids=(5, 7, 11), fingerprint=FP).to_bytes()
    with pytest.raises(ModelMismatch):
        PrefixHandle.from_bytes(data, FP.model_copy(update={"dtype": "float32"}))
    with pytest.raises(CorruptPayload):
        PrefixHandle.from_bytes(data[:20], FP)
    flipped = bytearray(data)
    flipped[-1] ^= 1  # last byte of the token ids: the tokens_sha256 check catches it
    with pytest.raises(CorruptPayload):
        PrefixHandle.from_bytes(bytes(flipped), FP)


# -- the engine --------------------------------------------------------------------------------


def test_engine_satisfies_protocol_and_counts_like_local(vllm_engine: VLLMEngine, engine: LocalEngine) -> None:
    from memos.engines import Engine

    assert isinstance(vllm_engine, Engine)
    for text in (DOC, QUESTION, "héllo <|im_end|> wörld"):
        assert vllm_engine.count_tokens(text) == engine.count_tokens(text)
    assert vllm_engine._prompt_ids(QUESTION, chat=True, after_prefix=True) == engine._prompt_ids(
        QUESTION, chat=True, after_prefix=True
    )


def test_fingerprint_differs_from_local_only_in_layout(vllm_engine: VLLMEngine, engine: LocalEngine) -> None:
    ours, local = vllm_engine.fingerprint().model_dump(), engine.fingerprint().model_dump()
    assert ours != local
    assert ours["dtype"] == f"vllm:{local['dtype']}"
    assert {k: v for k, v in ours.items() if k != "dtype"} == {k: v for k, v in local.items() if k != "dtype"}


def test_warm_prefix_gives_same_tokens_and_is_reused(vllm_engine: VLLMEngine, record_property: Any) -> None:
    prompt_ids = vllm_engine._prompt_ids(QUESTION, chat=True, after_prefix=True)
    handle = vllm_engine.build_kv(DOC, chat=True)
    assert isinstance(handle, PrefixHandle) and handle.fingerprint == vllm_engine.fingerprint()

    assert vllm_engine.reset_prefix_cache()
    cold = vllm_engine.generate_ids(list(handle.token_ids) + prompt_ids, max_tokens=16)
    assert cold.used["cached_tokens"] == 0

    vllm_engine.reset_prefix_cache()
    vllm_engine.warm(handle)
    warm = vllm_engine.generate(QUESTION, kv=[handle], chat=True, max_tokens=16)
    again = vllm_engine.generate(QUESTION, kv=[handle], chat=True, max_tokens=16)

    assert warm.token_ids == cold.token_ids == again.token_ids
    assert warm.text == cold.text and warm.text
    full_blocks = handle.tokens // vllm_engine.block_size * vllm_engine.block_size
    assert warm.used["cached_tokens"] >= full_blocks
    assert warm.used["prefix_tokens"] == handle.tokens and warm.used["kv"] == [handle.tokens_sha256]
    _report(record_property, prefix_tokens=handle.tokens, cached_tokens=warm.used["cached_tokens"],
            ttft_ms_cold=round(cold.ttft_ms, 1), ttft_ms_warm=round(warm.ttft_ms, 1),
            ttft_ms_warm_again=round(again.ttft_ms, 1))


def test_chat_generation_stops_at_end_of_turn(vllm_engine: VLLMEngine) -> None:
    out = vllm_engine.generate("Say hello.", chat=True, max_tokens=64)
    assert out.used["stop"] == "eos"
    assert out.tokens == len(out.token_ids) and "<|im_end|>" not in out.text


def test_local_cache_and_vllm_handle_are_not_interchangeable(vllm_engine: VLLMEngine, engine: LocalEngine) -> None:
    local_cache = engine.build_kv("A short prefix about Zorblax.", chat=True)
    with pytest.raises(ModelMismatch):
        vllm_engine.generate(QUESTION, kv=[local_cache], chat=True, max_tokens=4)
    handle = PrefixHandle(token_ids=local_cache.token_ids, fingerprint=vllm_engine.fingerprint())
    with pytest.raises(ModelMismatch):
        engine.generate(QUESTION, kv=[handle], chat=True, max_tokens=4)  # type: ignore[list-item]


def test_bad_requests_are_refused(vllm_engine: VLLMEngine, tmp_path: Path) -> None:
    handle = PrefixHandle(token_ids=(1, 2, 3), fingerprint=vllm_engine.fingerprint())
    with pytest.raises(ValueError, match="one KV prefix"):
        vllm_engine.generate("x", kv=[handle, handle])
    with pytest.raises(FileNotFoundError, match="adapter_config"):
        vllm_engine.generate("x", adapters=[tmp_path])
    with pytest.raises(ValueError, match="context"):
        vllm_engine.generate_ids([1] * 8190, max_tokens=8)
    with pytest.raises(ValueError):
        vllm_engine.build_kv("")


def test_exported_kv_is_loaded_back_after_its_blocks_are_gone(
    vllm_engine: VLLMEngine, tmp_path: Path, record_property: Any
) -> None:
    import shutil

    assert vllm_engine.kv_store_dir is not None
    doc = DOC.replace("Quimby", "Bartholomew")  # not the other tests' prefix
    handle = vllm_engine.build_kv(doc, chat=True)
    baseline = vllm_engine.generate(QUESTION, kv=[handle], chat=True, max_tokens=12)
    record = vllm_engine.export_kv(handle, tmp_path / "doc.kv.safetensors")
    assert record["format"] == "vllm-kv" and record["kv_tokens"] == handle.tokens // 32 * 32

    # Forget everything the engine had: its prefix cache and the connector's own copy. What is
    # loaded next can only come from the exported file.
    for entry in vllm_engine.kv_store_dir.iterdir():
        shutil.rmtree(entry)
    vllm_engine.reset_prefix_cache()
    imported = vllm_engine.import_kv(tmp_path / "doc.kv.safetensors")
    assert imported.token_ids == handle.token_ids
    out = vllm_engine.generate(QUESTION, kv=[imported], chat=True, max_tokens=12)
    assert out.token_ids == baseline.token_ids
    assert out.used["cached_tokens"] >= record["kv_tokens"]
    _report(record_property, export_bytes=record["bytes"], kv_tokens=record["kv_tokens"],
            ttft_ms_imported=round(out.ttft_ms, 1))

    other = vllm_engine.fingerprint().model_copy(update={"weights_sha256": "other"})
    from memos.engines.vllm_connector import import_prefix

    with pytest.raises(ModelMismatch):
        import_prefix(vllm_engine.kv_store_dir, tmp_path / "doc.kv.safetensors", other, vllm_engine.block_size)
    with pytest.raises(ModelMismatch):
        import_prefix(vllm_engine.kv_store_dir, tmp_path / "doc.kv.safetensors", vllm_engine.fingerprint(), 64)
    for entry in vllm_engine.kv_store_dir.iterdir():  # leave no saved prefix to later tests
        shutil.rmtree(entry)

