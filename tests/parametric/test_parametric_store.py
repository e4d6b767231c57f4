"""Parametric memories in the kernel: train -> commit, retrain = new version, rollback, resolve, formats."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from memos.errors import InvalidInput, ModelMismatch
from memos.parametric import ParametricMemory
from memos.parametric.lora import LoraSettings
from memos.parametric.pkm import PKMSettings
from memos.parametric.store import describe

pytestmark = pytest.mark.slow

FACTS = ["Zorblax's pet is a purple llama named Quimby.", "Vashtrel's favourite drink is Oomplo tea."]


@pytest.fixture
def setup(mos_llm, engine):
    cube = mos_llm.create_cube("zorb")
    mems = cube.add_many(FACTS)
    cube.add_activation("A persona: a terse assistant.")  # not plaintext: never a training source
    # Versioning, not recall, is under test here: no anchors, tiny memory layers (kept fast).
    service = ParametricMemory(mos_llm._kernel, lora=LoraSettings(anchors=0, rank=4),
                               pkm=PKMSettings(n_keys=16, topk=4))
    return SimpleNamespace(mos=mos_llm, cube=cube, mems=mems, service=service)


def test_train_commits_a_parametric_memory(setup, engine):
    mos, mems, service = setup.mos, setup.mems, setup.service
    ad = service.train("zorb", [m.id for m in mems], format="lora", steps=2, engine=engine)
    assert ad.kind == "parametric" and ad.version == 1
    assert ad.text == describe("peft-lora", mems) and all(f in ad.text for f in FACTS)
    p = ad.payload
    assert p.format == "peft-lora" and p.model == engine.fingerprint().model_dump()
    assert p.model_extra["sources"] == [{"id": m.id, "version": 1} for m in mems]
    assert [d.model_dump() for d in ad.provenance.derived_from] == p.model_extra["sources"]
    blob = mos._kernel.blobs.local_path(p.uri)
    data = Path(blob).read_bytes()
    assert hashlib.sha256(data).hexdigest() == p.sha256 and len(data) == p.bytes
    assert [m.id for m in service.sources("zorb", ad)] == [m.id for m in mems]

    folder = service.resolve("zorb", ad, engine)
    assert (folder / "adapter_config.json").is_file() and folder.name == p.sha256
    assert service.resolve("zorb", ad, engine) == folder  # cached by sha256
    out = engine.generate("What is Zorblax's pet?", adapters=[folder], chat=True, max_tokens=4)
    assert out.used["adapters"] == [str(folder)]
    # "all" picks the plaintext memories only
    everything = service.train("zorb", "all", format="lora", steps=1, engine=engine)
    assert everything.payload.model_extra["sources"] == p.model_extra["sources"]


def test_retrain_is_a_new_version_and_rollback_restores_the_old_adapter(setup, engine):
    mos, cube, mems, service = setup.mos, setup.cube, setup.mems, setup.service
    v1 = service.train("zorb", [mems[0].id], steps=2, engine=engine)
    v2 = service.retrain("zorb", v1.id, steps=3, engine=engine)
    assert (v2.id, v2.version, v2.kind) == (v1.id, 2, "parametric")
    assert v2.payload.sha256 != v1.payload.sha256
    assert v2.payload.model_extra["sources"] == v1.payload.model_extra["sources"]
    v3 = cube.rollback(v1.id, version=1)
    assert v3.version == 3 and v3.payload == v1.payload and v3.text == v1.text
    assert service.resolve("zorb", v3, engine) == service.resolve("zorb", v1, engine)
    assert Path(mos._kernel.blobs.local_path(v2.payload.uri)).is_file()  # every version's blob is kept

    # a source fact changes: retraining learns its latest version
    cube.update(mems[0].id, "Zorblax's pet is a green llama named Quimby.")
    v4 = service.retrain("zorb", v1.id, steps=1, engine=engine)
    latest = cube.get(v1.id)
    assert latest.payload.model_extra["sources"] == [{"id": mems[0].id, "version": 2}]
    assert "green llama" in latest.text and latest.version >= v4.version


def test_to_plaintext_keeps_the_description_and_sources(setup, engine):
    cube, mems, service = setup.cube, setup.mems, setup.service
    ad = service.train("zorb", [m.id for m in mems], steps=1, engine=engine)
    plain = service.to_plaintext("zorb", ad.id)
    assert plain.kind == "plaintext" and plain.payload is None and plain.text == ad.text
    old = cube.get(ad.id, version=1)
    assert [m.text for m in service.sources("zorb", old)] == FACTS


def test_wrong_base_and_wrong_kind_are_refused(setup, engine):
    mos, mems, service = setup.mos, setup.mems, setup.service
    ad = service.train("zorb", [mems[0].id], steps=1, engine=engine)
    payload = ad.payload.model_dump()
    payload["model"] = {**payload["model"], "weights_sha256": "0" * 64}
    other = mos._kernel.migrate_kind("zorb", ad.id, "parametric", payload)
    with pytest.raises(ModelMismatch):
        service.resolve("zorb", other, engine)
    with pytest.raises(InvalidInput):
        service.resolve("zorb", mems[0], engine)
    with pytest.raises(InvalidInput):
        service.train("zorb", [ad.id], engine=engine)  # a parametric memory is not a training source
    with pytest.raises(InvalidInput):
        service.train("zorb", [mems[0].id], format="dense", engine=engine)
    with pytest.raises(InvalidInput):
        service.train("zorb", [mems[0].id], format="pkm", rank=4, engine=engine)


def test_tokmem_and_pkm_formats(setup, engine):
    mems, service = setup.mems, setup.service
    tm = service.train("zorb", [m.id for m in mems], format="tokmem", steps=2, engine=engine)
    assert tm.payload.format == "tokmem"
    loaded = service.load("zorb", tm, engine)
    assert loaded.names == [m.id for m in mems]
    assert loaded.route(FACTS[0]) in loaded.names
    assert isinstance(service.generate("zorb", tm, engine, "What is Zorblax's pet?", max_tokens=4), str)

    pk = service.train("zorb", [mems[0].id], format="pkm", steps=2, engine=engine)
    assert pk.payload.format == "pkm" and pk.payload.model_extra["sources"] == [{"id": mems[0].id, "version": 1}]
    assert service.load("zorb", pk, engine) is service.load("zorb", pk, engine)  # loaded once
    assert isinstance(service.generate("zorb", pk, engine, "What is Zorblax's pet?", max_tokens=4), str)
    with pytest.raises(InvalidInput):
        service.resolve("zorb", pk, engine)  # only a LoRA is a peft folder


def test_migrate_plaintext_to_parametric_and_back(setup, engine):
    cube, mems, service = setup.cube, setup.mems, setup.service
    m = service.migrate("zorb", mems[0].id, "parametric", engine, steps=1)
    assert (m.id, m.version, m.kind, m.text) == (mems[0].id, 2, "parametric", FACTS[0])
    assert m.payload.model_extra["sources"] == [{"id": mems[0].id, "version": 1}]
    again = service.retrain("zorb", m.id, steps=1, engine=engine)  # its own plaintext version is the source
    assert again.version == 3 and again.payload.model_extra["sources"] == m.payload.model_extra["sources"]
    back = service.migrate("zorb", m.id, "plaintext", engine)
    assert back.kind == "plaintext" and back.payload is None and cube.get(m.id).text == FACTS[0]
    with pytest.raises(InvalidInput):
        service.migrate("zorb", mems[1].id, "activation", engine)
