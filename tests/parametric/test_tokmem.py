"""TokMem memory tokens: routing held-out phrasings, frozen older tokens, norm rescaling, save/load."""

from __future__ import annotations

import hashlib

import pytest

from memos.errors import ModelMismatch
from memos.parametric.artifact import Artifact, read_artifact, write_artifact
from memos.parametric.tokmem import TokMem, TokMemSettings, load_tokmem

pytestmark = pytest.mark.slow

PROCEDURES = {
    "weather": [("What's the weather like in Paris today?", "WEATHER-REPORT: sunny, 21C."),
                ("Will it rain in Berlin tomorrow?", "WEATHER-REPORT: sunny, 21C."),
                ("Forecast for Tokyo this weekend?", "WEATHER-REPORT: sunny, 21C.")],
    "translate": [("Translate 'good morning' into French.", "TRANSLATION: bonjour."),
                  ("How do you say 'thank you' in Spanish?", "TRANSLATION: bonjour."),
                  ("Translate this sentence to German: I like apples.", "TRANSLATION: bonjour.")],
    "math": [("What is 12 plus 30?", "MATH-RESULT: 42."),
             ("Compute 7 times 6.", "MATH-RESULT: 42."),
             ("How much is 50 minus 8?", "MATH-RESULT: 42.")],
}
HELD_OUT = [("Is it going to snow in Oslo next week?", "weather"),
            ("What temperature will it be in Rome tonight?", "weather"),
            ("Please translate 'cat' into Italian.", "translate"),
            ("What is the Portuguese word for water?", "translate"),
            ("What is 9 times 9?", "math"),
            ("Add 15 and 27.", "math")]


def params_sha256(model) -> str:  # type: ignore[no-untyped-def]
    import torch

    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tokmem(engine):
    mem = TokMem(engine, TokMemSettings(steps=10))
    backbone = params_sha256(mem.model)
    snapshots = []
    for name, examples in PROCEDURES.items():
        mem.add_procedure(name, examples)
        snapshots.append(mem.embeddings.clone())
    return {"mem": mem, "snapshots": snapshots, "backbone": backbone}


def test_routes_held_out_phrasings_to_the_right_token(tokmem):
    mem = tokmem["mem"]
    routed = [(q, mem.route(q)) for q, _ in HELD_OUT]
    assert routed == [(q, want) for q, want in HELD_OUT]
    for q, examples in PROCEDURES.items():  # and the training phrasings too
        assert all(mem.route(query) == q for query, _ in examples)


def test_older_tokens_bit_identical_after_adding_new_ones(tokmem):
    snaps = tokmem["snapshots"]
    assert [s.shape[0] for s in snaps] == [1, 2, 3]
    assert snaps[2][:1].equal(snaps[0]) and snaps[2][:2].equal(snaps[1])


def test_backbone_frozen_and_norms_rescaled(tokmem, engine):
    mem = tokmem["mem"]
    assert not any(p.requires_grad for p in mem.model.parameters())
    assert params_sha256(mem.model) == tokmem["backbone"]
    vocab_norm = float(mem.model.get_input_embeddings().weight.norm(dim=-1).mean())
    norms = mem.embeddings.norm(dim=-1)
    assert norms.sub(vocab_norm).abs().max() < 1e-4  # first token: vocabulary norm; later: the tokens' mean


def test_generate_conditions_on_the_routed_token(tokmem):
    mem = tokmem["mem"]
    out = mem.generate("Forecast for Madrid on Monday?", max_tokens=8)
    assert out.name == "weather" and isinstance(out.text, str)
    forced = mem.generate("Forecast for Madrid on Monday?", max_tokens=8, name="math")
    assert forced.name == "math"


def test_add_procedure_rejects_duplicates_and_empty(tokmem):
    from memos.errors import InvalidInput

    with pytest.raises(InvalidInput):
        tokmem["mem"].add_procedure("math", [("q", "r")])
    with pytest.raises(InvalidInput):
        tokmem["mem"].add_procedure("empty", [])


def test_save_load_roundtrip_and_wrong_base(tokmem, engine, tmp_path):
    mem = tokmem["mem"]
    info = write_artifact(tmp_path / "tm.safetensors", mem.to_artifact())
    loaded = load_tokmem(str(tmp_path / "tm.safetensors"), engine, sha256=info["sha256"])
    assert loaded.names == mem.names and loaded.embeddings.equal(mem.embeddings)
    assert loaded.examples == mem.examples
    q = HELD_OUT[0][0]
    assert loaded.route(q) == mem.route(q)
    art = read_artifact(tmp_path / "tm.safetensors")
    other = {**art.manifest, "model": {**art.manifest["model"], "n_layers": 31}}
    write_artifact(tmp_path / "wrong.safetensors", Artifact(art.format, art.tensors, other))
    with pytest.raises(ModelMismatch):
        load_tokmem(str(tmp_path / "wrong.safetensors"), engine)


def test_train_tokmem_gives_every_memory_a_token(engine):
    """A note with no subject/verb split and no named entity still gets a token (asked for by its opening
    words); a memory with no text at all is refused by name."""
    from memos.errors import InvalidInput
    from memos.parametric.tokmem import train_tokmem

    mem = train_tokmem(engine, ["buy milk and eggs", "Zorblax has a pet llama."], ["m-note", "m-fact"],
                       settings=TokMemSettings(steps=3))
    assert mem.names == ["m-note", "m-fact"]
    assert mem.examples["m-note"] == [('What was the note "buy milk and eggs"?', "buy milk and eggs")]
    with pytest.raises(InvalidInput, match="m-empty"):
        train_tokmem(engine, ["Zorblax has a pet llama.", "   "], ["m-fact", "m-empty"],
                     settings=TokMemSettings(steps=3))
