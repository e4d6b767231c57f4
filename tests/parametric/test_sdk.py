"""Parametric memory through the public surface: cube.train_adapter, mos.generate(adapters=...),
mos.migrate(to="parametric"), `memos adapter train`, the background task, bad inputs."""

from __future__ import annotations

import json

import pytest

from memos.errors import AccessDenied, InvalidInput, MemoryNotFound
from memos.parametric.lora import LoraSettings

pytestmark = pytest.mark.slow

FACT = "Zorblax's pet is a purple llama named Quimby."
QUESTION = "What is Zorblax's pet?"


@pytest.fixture
def zorb(mos_llm):
    cube = mos_llm.create_cube("zorb", owner="alice")
    return cube, cube.add(FACT), cube.add("The office coffee machine is broken.")


def test_train_adapter_then_generate_recalls_the_fact_only_with_it(mos_llm, zorb):
    cube, fact, _ = zorb
    # few steps on one fact; no anchors keeps it quick (anchors are exercised in test_lora)
    mos_llm._parametric().defaults["peft-lora"] = LoraSettings(anchors=0)
    ad = cube.train_adapter(memory_ids=[fact.id], format="lora", steps=12)
    assert ad.kind == "parametric" and ad.payload.format == "peft-lora"
    assert [d.id for d in ad.provenance.derived_from] == [fact.id]
    with_ad = mos_llm.generate("zorb", QUESTION, adapters=[ad.id], retrieve=False, max_tokens=24)
    without = mos_llm.generate("zorb", QUESTION, retrieve=False, max_tokens=24)
    assert "quimby" in with_ad.text.lower(), with_ad.text
    assert "quimby" not in without.text.lower(), without.text
    assert with_ad.used["adapters"] == [ad.id] and without.used["adapters"] == []
    # a parametric memory is found by what it holds, like any memory
    assert ad.id in [h.memory.id for h in cube.search("Zorblax llama", top_k=5)]


def test_tokmem_memory_answers_alone_and_refuses_company(mos_llm, zorb):
    cube, fact, other = zorb
    tm = cube.train_adapter([fact.id, other.id], format="tokmem", steps=2)
    out = mos_llm.generate("zorb", QUESTION, adapters=[tm.id], retrieve=False, max_tokens=4)
    assert out.used["format"] == "tokmem" and out.used["routed_to"] in (fact.id, other.id)
    kv = cube.add_activation("A persona: a terse assistant.")
    with pytest.raises(InvalidInput):
        mos_llm.generate("zorb", QUESTION, adapters=[tm.id], kv=[kv.id], retrieve=False)


def test_bad_inputs_are_typed_and_write_nothing(mos_llm, zorb):
    cube, fact, _ = zorb
    head = cube.info().head
    with pytest.raises(InvalidInput):
        cube.train_adapter([fact.id], format="dense")
    with pytest.raises(InvalidInput):
        cube.train_adapter([])
    with pytest.raises(MemoryNotFound):
        cube.train_adapter(["no-such-id"])
    with pytest.raises(InvalidInput):
        mos_llm.generate("zorb", QUESTION, adapters=[fact.id])  # plaintext is not an adapter
    with pytest.raises(AccessDenied):
        mos_llm.as_principal("mallory").cube("zorb").train_adapter([fact.id])
    assert cube.info().head == head


def test_migrate_to_parametric_and_back_keeps_text(mos_llm, zorb):
    from memos.parametric.pkm import PKMSettings

    cube, fact, _ = zorb
    mos_llm._parametric().defaults["pkm"] = PKMSettings(n_keys=16, topk=4, steps=2)  # kinds, not recall
    m = mos_llm.migrate("zorb", fact.id, to="parametric", format="pkm")
    assert (m.kind, m.version, m.text) == ("parametric", 2, FACT) and m.payload.format == "pkm"
    back = mos_llm.migrate("zorb", fact.id, to="plaintext")
    assert back.kind == "plaintext" and back.payload is None and back.text == FACT


def test_background_training_task(mos_llm, zorb):
    cube, fact, _ = zorb
    mos_llm.submit("train_adapter", {"cube": "zorb", "memory_ids": [fact.id], "format": "pkm", "steps": 1})
    q = mos_llm.tasks()
    q.drain(timeout_s=300)
    assert q.stats()["done"] == 1 and q.stats()["failed"] == 0, q.stats()
    assert [m.kind for m in cube.list()].count("parametric") == 1


def test_cli_adapter_train_and_generate(tmp_path, models_dir, engine, monkeypatch, capsys):
    from memos.cli import main

    monkeypatch.setenv("MEMOS_MODELS_DIR", str(models_dir))  # the session's converted model

    def run(*args: str, code: int = 0) -> dict:
        rc = main(["--home", str(tmp_path / "home"), *args, "--json"])
        out, err = capsys.readouterr()
        assert rc == code, (args, out, err)
        return json.loads(out)

    run("cube", "create", "zorb")
    fact = run("add", "zorb", FACT)
    assert run("adapter", "train", "zorb", code=1)["error"]["type"] == "InvalidInput"  # no --memories/--all
    assert run("adapter", "train", "zorb", "--all", "--format", "dense", code=1)["error"]["type"] == "InvalidInput"
    ad = run("adapter", "train", "zorb", "--memories", fact["id"], "--format", "pkm", "--steps", "1")
    assert ad["kind"] == "parametric" and ad["payload"]["format"] == "pkm"
    out = run("generate", "zorb", QUESTION, "--adapter", ad["id"], "--no-retrieve", "--max-tokens", "3")
    assert out["used"]["adapters"] == [ad["id"]] and isinstance(out["text"], str)
    assert run("migrate", "zorb", ad["id"], "--to", "plaintext")["kind"] == "plaintext"
