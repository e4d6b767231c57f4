"""LoRA adapters distilled from plaintext: recall of a nonce fact, frozen backbone, swapping, wrong base."""

from __future__ import annotations

import hashlib

import pytest

from memos.errors import CorruptPayload, ModelMismatch
from memos.parametric.artifact import Artifact, read_artifact, write_artifact
from memos.parametric.distill import examples_from_fact, examples_from_facts
from memos.parametric.lora import LoraSettings, LoraTrainer, materialize_lora, save_lora

FACT_A = "Zorblax's pet is a purple llama named Quimby."
QUESTION_A = "What is Zorblax's pet?"
FACT_B = "Vashtrel's favourite drink is Oomplo tea."
QUESTION_B = "What is Vashtrel's favourite drink?"
STEPS = 12  # one fact = 4 training pairs: 12 epochs
# A few anchors keep the default training path (memories + base-model answers) under test, cheaply.
SETTINGS = LoraSettings(steps=STEPS, anchors=4, anchors_per_step=2, anchor_tokens=12)


def weights_sha256(model) -> str:  # type: ignore[no-untyped-def]
    """Hash of every base weight (peft adapter layers, if loaded, are skipped; names normalised)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items(), key=lambda kv: kv[0].replace(".base_layer", "")):
        if "lora_" in name:
            continue
        h.update(name.replace(".base_layer", "").encode())
        h.update(tensor.detach().contiguous().view(-1).view(__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------- no model needed
def test_examples_are_deterministic_and_cover_question_forms():
    ex = examples_from_fact(FACT_A)
    assert ex == examples_from_fact(FACT_A)
    forms = {e.form: e for e in ex}
    assert set(forms) == {"statement", "ask", "tell", "about"}
    assert forms["statement"].prompt == "Zorblax's pet" and not forms["statement"].chat
    assert forms["ask"].prompt == QUESTION_A and forms["ask"].answer == FACT_A
    assert forms["about"].prompt == "What do you know about Zorblax?"
    assert [e.source for e in examples_from_facts([FACT_A, FACT_B])] == [0] * 4 + [1] * 4
    # no verb: a statement form continued from its first words
    assert [e.form for e in examples_from_fact("quantum soup")] == ["statement"]


# ----------------------------------------------------------------------------------- model tests
@pytest.fixture(scope="module")
def trained(engine, tmp_path_factory):
    """Two adapters (one fact each) trained once for the module, and the backbone hash around it."""
    root = tmp_path_factory.mktemp("lora")
    before = weights_sha256(engine.model)
    trainer = LoraTrainer(engine, SETTINGS)
    art_a = trainer.train([FACT_A], sources=[{"id": "m-a", "version": 1}])
    report_a = trainer.last_report
    art_b = trainer.train([FACT_B], sources=[{"id": "m-b", "version": 1}])
    after = weights_sha256(engine.model)
    save_lora(art_a, root / "a.safetensors")
    save_lora(art_b, root / "b.safetensors")
    return {"root": root, "a": art_a, "b": art_b, "report_a": report_a, "before": before, "after": after,
            "folder_a": str(materialize_lora(root / "a.safetensors", root / "a", engine)),
            "folder_b": str(materialize_lora(root / "b.safetensors", root / "b", engine))}


@pytest.mark.slow
def test_nonce_fact_recalled_with_adapter_and_not_without(engine, trained):
    with_adapter = engine.generate(QUESTION_A, adapters=[trained["folder_a"]], chat=True, max_tokens=24)
    without = engine.generate(QUESTION_A, chat=True, max_tokens=24)
    assert "quimby" in with_adapter.text.lower(), with_adapter.text
    assert "quimby" not in without.text.lower(), without.text
    assert trained["report_a"].final_loss < trained["report_a"].first_loss / 5


@pytest.mark.slow
def test_backbone_bit_identical_after_training_and_adapter_use(engine, trained):
    assert trained["before"] == trained["after"]
    engine.generate(QUESTION_A, adapters=[trained["folder_a"]], chat=True, max_tokens=2)
    assert weights_sha256(engine.model) == trained["before"]  # peft adds layers, never edits base weights


@pytest.mark.slow
def test_two_adapters_swap_each_with_its_own_answer(engine, trained):
    a, b = trained["folder_a"], trained["folder_b"]
    for _ in range(2):  # A, B, A, B: switching back and forth keeps each adapter's answer
        out_a = engine.generate(QUESTION_A, adapters=[a], chat=True, max_tokens=24).text.lower()
        out_b = engine.generate(QUESTION_B, adapters=[b], chat=True, max_tokens=24).text.lower()
        assert "quimby" in out_a and "oomplo" in out_b, (out_a, out_b)
    assert "oomplo" not in engine.generate(QUESTION_B, adapters=[a], chat=True, max_tokens=24).text.lower()


@pytest.mark.slow
def test_artifact_is_one_safetensors_file_with_manifest(engine, trained):
    path = trained["root"] / "a.safetensors"
    art = read_artifact(path, expected_format="peft-lora", model=engine)
    assert art.sources == [{"id": "m-a", "version": 1}]
    assert art.manifest["model"] == engine.fingerprint().model_dump()
    assert art.config["adapter_config"]["r"] == LoraSettings().rank
    assert set(art.tensors) == set(trained["a"].tensors) and all("lora_" in k for k in art.tensors)
    header_len = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors: u64 header size, JSON
    assert path.read_bytes()[8:9] == b"{" and header_len > 0
    with pytest.raises(CorruptPayload):
        read_artifact(path, sha256="0" * 64)


@pytest.mark.slow
def test_wrong_base_adapter_raises_model_mismatch(engine, trained, tmp_path):
    other = {**engine.fingerprint().model_dump(), "weights_sha256": "f" * 64}
    art = trained["a"]
    wrong = Artifact(art.format, art.tensors, {**art.manifest, "model": other})
    write_artifact(tmp_path / "wrong.safetensors", wrong)
    with pytest.raises(ModelMismatch) as info:
        materialize_lora(tmp_path / "wrong.safetensors", tmp_path / "wrong", engine)
    assert "weights_sha256" in str(info.value)
    assert not (tmp_path / "wrong").exists()


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed(engine):
    settings = LoraSettings(steps=2, rank=2, layers=(28, 29), anchors=2, anchors_per_step=1, anchor_tokens=4)
    one = LoraTrainer(engine, settings).train([FACT_B])
    two = LoraTrainer(engine, settings).train([FACT_B])
    assert all(one.tensors[k].equal(two.tensors[k]) for k in one.tensors)
    assert len(one.tensors) == 2 * 2 * 7  # 2 layers x (A, B) x 7 linear layers
