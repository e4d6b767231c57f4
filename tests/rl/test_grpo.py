"""GRPO harness (memos.rl.grpo): group-relative advantages by hand, and real updates of a LoRA on the
frozen local model (SmolLM2-135M): weights move when a group's rewards differ and stay bit-identical when
they are all equal; the backbone never changes; save/load round-trips through safetensors + JSON."""

from __future__ import annotations

import json

import pytest

from memos.errors import InvalidInput, ModelMismatch
from memos.rl import GRPOSettings, LoraPolicy, Sample, group_advantages


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_group_advantages_by_hand():
    # group a: mean 0.5, population std 0.5 -> ±1; group b: all equal -> 0; group c: one member -> 0
    adv = group_advantages([1.0, 0.0, 2.0, 2.0, 5.0], ["a", "a", "b", "b", "c"])
    assert adv == pytest.approx([1.0, -1.0, 0.0, 0.0, 0.0], abs=1e-5)
    # three members: mean 2, std sqrt(8/3)
    adv = group_advantages([0.0, 2.0, 4.0], [1, 1, 1])
    assert adv == pytest.approx([-1.224744, 0.0, 1.224744], abs=1e-5)
    assert group_advantages([3.0, 1.0], ["g", "g"], scale=False) == pytest.approx([1.0, -1.0])
    with pytest.raises(InvalidInput):
        group_advantages([1.0], ["a", "b"])


@pytest.fixture(scope="module")
def policy(engine):
    return LoraPolicy(engine, GRPOSettings(rank=4, alpha=8.0, lr=1e-3, seed=1))


@pytest.fixture(scope="module")
def completions(policy):
    """Two sampled completions of one short prompt (the exact ids the policy generated)."""
    from memos.llm import LocalChat

    chat = LocalChat(policy)
    msgs = [{"role": "user", "content": "Name a colour."}]
    out = [chat.chat(msgs, temperature=1.0, max_tokens=8).raw for _ in range(2)]
    assert out[0].prompt_ids == out[1].prompt_ids and all(o.token_ids for o in out)
    return out


def _weight_sum(model) -> float:
    return float(sum(p.detach().double().sum() for p in model.parameters()))


@pytest.mark.slow
def test_step_moves_lora_weights_only_when_group_rewards_differ(engine, policy, completions):
    import torch

    a, b = completions
    engine_before = _weight_sum(engine.model)
    base = {n: p.detach().clone() for n, p in policy._peft.named_parameters() if not p.requires_grad}
    before = policy.trainable_state()

    report = policy.step([Sample(a.prompt_ids, a.token_ids, 1.0, "q"), Sample(b.prompt_ids, b.token_ids, 0.0, "q")])
    assert not report.skipped and report.samples == 2 and report.groups == 1
    assert report.advantages == pytest.approx([1.0, -1.0], abs=1e-4) and report.grad_norm > 0
    after = policy.trainable_state()
    changed = [n for n in before if not torch.equal(before[n], after[n])]
    assert changed and all("lora_" in n for n in changed)
    # the backbone (frozen copy) and the engine's served model are untouched
    assert all(torch.equal(p, base[n]) for n, p in policy._peft.named_parameters() if not p.requires_grad)
    assert _weight_sum(engine.model) == engine_before

    # equal rewards in the group: no signal, no optimizer step, bit-identical weights
    report = policy.step([Sample(a.prompt_ids, a.token_ids, 0.7, "q"), Sample(b.prompt_ids, b.token_ids, 0.7, "q")])
    assert report.skipped and report.advantages == [0.0, 0.0]
    again = policy.trainable_state()
    assert all(torch.equal(after[n], again[n]) for n in after)

    # tokens outside the loss mask (e.g. an observation spliced into a trajectory) are never trained on
    masked = [Sample(s.prompt_ids, s.token_ids, r, "q", mask=(0,) * len(s.token_ids)) for s, r in ((a, 1.0), (b, 0.0))]
    report = policy.step(masked)
    assert report.skipped and report.tokens == 0
    assert all(torch.equal(after[n], t) for n, t in policy.trainable_state().items())

    with pytest.raises(InvalidInput):
        policy.step([])
    with pytest.raises(InvalidInput):
        policy.step([Sample(a.prompt_ids, a.token_ids, 1.0, "q", mask=(1,))])


@pytest.mark.slow
def test_update_raises_the_rewarded_completion_and_clipped_epochs_run(engine, completions):
    a, b = completions
    pol = LoraPolicy(engine, GRPOSettings(rank=4, alpha=8.0, lr=5e-3, epochs=2, kl_beta=0.05, seed=2))
    samples = [Sample(a.prompt_ids, a.token_ids, 1.0, "q"), Sample(b.prompt_ids, b.token_ids, 0.0, "q")]
    before = [float(pol.token_logprobs(s.prompt_ids, s.completion_ids).detach().sum()) for s in samples]
    report = pol.step(samples)
    after = [float(pol.token_logprobs(s.prompt_ids, s.completion_ids).detach().sum()) for s in samples]
    assert not report.skipped
    assert after[0] - before[0] > after[1] - before[1]  # the rewarded completion gained relative to the other


@pytest.mark.slow
def test_save_and_load_round_trip(tmp_path, engine, policy, completions):
    import torch

    a, _ = completions
    folder = policy.save(tmp_path / "policy", meta={"method": "test"})
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors", "policy.json"]  # no pickle
    doc = json.loads((folder / "policy.json").read_text())
    assert doc["format"] == "memos-grpo-lora" and doc["settings"]["rank"] == 4 and doc["meta"] == {"method": "test"}
    assert len(doc["history"]) == len(policy.history)

    loaded = LoraPolicy.load(folder, engine)
    saved, back = policy.trainable_state(), loaded.trainable_state()
    assert saved.keys() == back.keys() and all(torch.equal(saved[n], back[n]) for n in saved)
    assert torch.allclose(policy.token_logprobs(a.prompt_ids, a.token_ids),
                          loaded.token_logprobs(a.prompt_ids, a.token_ids))

    doc["model"] = {**doc["model"], "weights_sha256": "0" * 64}
    (folder / "policy.json").write_text(json.dumps(doc))
    with pytest.raises(ModelMismatch):
        LoraPolicy.load(folder, engine)
    with pytest.raises(InvalidInput):
        LoraPolicy.load(tmp_path / "nothing", engine)
