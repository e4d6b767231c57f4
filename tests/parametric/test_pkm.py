"""Product-key memory: exact top-k, no-op at initialisation, training only its own parameters."""

from __future__ import annotations

import pytest

from memos.errors import InvalidInput, ModelMismatch
from memos.parametric.artifact import Artifact, read_artifact, write_artifact
from memos.parametric.pkm import (
    PKMAdapter,
    PKMSettings,
    attached,
    brute_force_topk,
    load_pkm,
    product_key_memory,
)

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("n_keys,topk,heads", [(8, 2, 1), (16, 4, 2), (32, 8, 4), (5, 5, 1)])
def test_product_key_topk_equals_brute_force(n_keys, topk, heads):
    torch.manual_seed(n_keys)
    mem = product_key_memory(48, PKMSettings(n_keys=n_keys, topk=topk, key_dim=16, heads=heads, value_dim=24))
    x = torch.randn(3, 7, 48)
    scores, idx = mem.lookup(x)
    ref_scores, ref_idx = brute_force_topk(mem, x)
    assert scores.shape == (3, 7, heads, topk)
    assert torch.equal(scores, ref_scores)
    assert torch.equal(idx, ref_idx)
    assert int(idx.max()) < n_keys * n_keys


def test_output_is_zero_at_init_and_gradients_reach_values():
    mem = product_key_memory(32, PKMSettings(n_keys=8, topk=3, key_dim=8, value_dim=16))
    x = torch.randn(2, 5, 32)
    assert torch.equal(mem(x), torch.zeros(2, 5, 32))
    mem(x).sum().backward()
    assert mem.out.weight.grad.abs().sum() > 0  # W_o learns first; values follow once W_o != 0
    with pytest.raises(InvalidInput):
        product_key_memory(32, PKMSettings(n_keys=4, topk=5))


def test_ungated_memory_reads_the_softmax_weighted_rows():
    mem = product_key_memory(16, PKMSettings(n_keys=4, topk=2, key_dim=8, value_dim=16, gated=False))
    torch.nn.init.eye_(mem.out.weight)
    x = torch.randn(1, 16)
    scores, idx = mem.lookup(x)
    w = torch.softmax(scores[0, 0], -1)
    expected = (w[:, None] * mem.values[idx[0, 0]]).sum(0)
    assert torch.allclose(mem(x)[0], expected, atol=1e-6)


@pytest.fixture(scope="module")
def adapter(engine):
    return PKMAdapter(engine, PKMSettings(steps=8, lr=1e-2))


@pytest.mark.slow
def test_adapter_is_a_no_op_at_init(adapter, engine):
    ids = torch.tensor([engine.encode("Zorblax's pet is a purple llama named Quimby.")])
    with torch.no_grad():
        base = adapter.model(input_ids=ids).logits
        with adapter.attached():
            with_memory = adapter.model(input_ids=ids).logits
    assert torch.equal(base, with_memory)
    # the private copy computes what the engine's model computes
    assert torch.allclose(base, engine.forward_logits(ids[0].tolist())[None], atol=1e-4)


@pytest.mark.slow
def test_training_changes_only_memory_parameters(adapter, engine, tmp_path):
    ids = torch.tensor([engine.encode("Zorblax's pet is")])
    backbone = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    with torch.no_grad():
        base = adapter.model(input_ids=ids).logits
    adapter.train(["Zorblax's pet is a purple llama named Quimby."], sources=[{"id": "m", "version": 1}])
    assert adapter.training["final_loss"] < adapter.training["first_loss"]
    state = adapter.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in backbone.items())
    with torch.no_grad():
        assert torch.equal(adapter.model(input_ids=ids).logits, base)  # detached outside the block
        with adapter.attached():
            assert not torch.equal(adapter.model(input_ids=ids).logits, base)
    assert isinstance(adapter.generate("What is Zorblax's pet?", max_tokens=4), str)

    info = write_artifact(tmp_path / "pkm.safetensors", adapter.to_artifact())
    loaded = load_pkm(str(tmp_path / "pkm.safetensors"), engine, sha256=info["sha256"])
    x = torch.randn(2, engine.model.config.hidden_size)
    with torch.no_grad():
        assert torch.equal(loaded.memory(x), adapter.memory(x))
    assert loaded.layer == adapter.layer and loaded.sources == [{"id": "m", "version": 1}]
    art = read_artifact(tmp_path / "pkm.safetensors")
    write_artifact(tmp_path / "wrong.safetensors",
                   Artifact(art.format, art.tensors, {**art.manifest, "model": {"model_id": "other"}}))
    with pytest.raises(ModelMismatch):
        load_pkm(str(tmp_path / "wrong.safetensors"), engine)


@pytest.mark.slow
def test_attached_hook_is_removed_on_error(adapter):
    mlp = adapter.model.get_decoder().layers[adapter.layer].mlp
    with pytest.raises(RuntimeError), attached(adapter.model, adapter.memory, adapter.layer):
        assert len(mlp._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(mlp._forward_hooks) == 0
