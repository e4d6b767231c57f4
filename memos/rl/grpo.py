"""GRPO: group-relative policy optimisation of a LoRA adapter on the frozen local model.

One harness for every method plugin that learns a policy from rewards (Mem-alpha's memory writer,
MEM1's reasoning agent). The plugins roll out episodes, turn them into :class:`Sample` objects (prompt
token ids, completion token ids, an optional loss mask, a scalar reward, a group key) and call
:meth:`LoraPolicy.step`.

The objective is GRPO as in Shao et al. 2024 (DeepSeekMath, §4.1.2, eq. 3 and "outcome supervision"):

* advantage: every sample of a group (the rollouts of one input) gets
  ``A_i = (r_i - mean(r_group)) / std(r_group)`` (population std; ``scale_rewards=False`` keeps only the
  centring), the same value on every completion token;
* loss: ``-1/N Σ_i 1/|o_i| Σ_t min(ρ_t A_i, clip(ρ_t, 1-ε, 1+ε) A_i) - β KL_t`` over the tokens
  in the loss mask, with ``ρ_t = π_θ(o_t) / π_θold(o_t)``. With one update per batch of rollouts
  (``epochs=1``, the default) ρ is 1 and this is the policy gradient ``A ∇log π``; ``epochs > 1``
  reuses the rollouts with clipping. ``kl_beta`` adds the k3 KL estimate against the base model
  (the adapter switched off); it is 0 by default, as in Mem-alpha (no KL penalty).
* a batch in which every group has equal rewards carries no signal: all advantages are 0 and no
  optimizer step is taken, so the weights stay exactly as they were.

The backbone is never trained: :class:`LoraPolicy` loads a private frozen copy of the engine's model
(``engine.model`` is not touched) and trains only the LoRA matrices. A saved policy is a folder with the
peft adapter (``adapter_model.safetensors`` + ``adapter_config.json``, which ``engine.generate(adapters=
[folder])`` can also load) and ``policy.json`` (base-model fingerprint, settings, step history). No pickle;
the optimizer moments are not saved.

``LoraPolicy`` offers the three calls :class:`memos.llm.LocalChat` makes on an engine (``_render_chat``,
``encode``, ``generate_ids``), so ``LocalChat(policy)`` is a chat backend that samples from the policy;
``ChatResult.raw`` is then a :class:`Sampled` with the exact prompt and completion ids to train on.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memos.errors import CorruptPayload, InvalidInput

POLICY_FORMAT = "memos-grpo-lora"
POLICY_VERSION = 1


@dataclass(frozen=True)
class GRPOSettings:
    """How the policy adapter is built and trained. Defaults suit SmolLM2-135M on a CPU."""

    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA scaling numerator (the update is ``alpha / rank * B @ A``)."""
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Linear layers of every decoder block that get an adapter."""
    lr: float = 1e-4
    """AdamW learning rate (no weight decay: a zero gradient leaves a weight unchanged)."""
    clip_eps: float = 0.2
    """PPO clipping range ε of the ratio (only matters with ``epochs > 1``)."""
    kl_beta: float = 0.0
    """Weight β of the KL penalty against the base model (0: none, as in Mem-alpha)."""
    epochs: int = 1
    """Optimizer updates per batch of rollouts."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    scale_rewards: bool = True
    """Divide the centred rewards by the group's standard deviation."""
    seed: int = 0
    """Seeds the adapter initialisation and the sampling sequence."""

    def check(self) -> None:
        if self.rank < 1 or self.epochs < 1 or not self.lr > 0 or self.clip_eps < 0 or self.kl_beta < 0:
            raise InvalidInput("rank and epochs must be >= 1, lr > 0, clip_eps and kl_beta >= 0",
                               field="settings")
        if not self.target_modules:
            raise InvalidInput("target_modules is empty", field="target_modules")


@dataclass(frozen=True)
class Sample:
    """One completion to learn from: ``prompt_ids`` are context (never in the loss), ``completion_ids``
    the policy's own tokens; ``mask`` (same length as the completion, 1 = in the loss) can exclude
    completion tokens that the policy did not write (e.g. an observation spliced into a trajectory)."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]
    reward: float
    group: Hashable
    mask: tuple[int, ...] | None = None

    def loss_mask(self) -> tuple[int, ...]:
        return self.mask if self.mask is not None else (1,) * len(self.completion_ids)


@dataclass(frozen=True)
class Sampled:
    """A completion sampled from the policy (``ChatResult.raw`` when the policy serves a chat)."""

    text: str
    token_ids: tuple[int, ...]
    prompt_ids: tuple[int, ...]
    stop: str  # "eos" | "stop_string" | "max_tokens"
    tokens: int = 0


@dataclass
class GRPOStep:
    """What one :meth:`LoraPolicy.step` did."""

    step: int
    samples: int
    groups: int
    mean_reward: float
    reward_std: float
    loss: float
    grad_norm: float
    tokens: int
    seconds: float
    skipped: bool
    advantages: list[float] = field(default_factory=list)


def group_advantages(rewards: Sequence[float], groups: Sequence[Hashable], *, scale: bool = True,
                     eps: float = 1e-6) -> list[float]:
    """``(r - mean_g) / std_g`` per sample, with the mean and population std of its group ``g``.

    A group whose rewards are all equal (or a group of one) gets advantage 0 for every member.
    """
    if len(rewards) != len(groups):
        raise InvalidInput("rewards and groups differ in length", field="groups")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = [0.0] * len(rewards)
    for idx in members.values():
        vals = [float(rewards[i]) for i in idx]
        mean = sum(vals) / len(vals)
        std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
        if std <= eps:
            continue
        for i, v in zip(idx, vals, strict=True):
            out[i] = (v - mean) / (std + eps) if scale else v - mean
    return out


class LoraPolicy:
    """A LoRA adapter on a frozen private copy of ``engine``'s model, trained with GRPO.

    Example::

        policy = LoraPolicy(engine, GRPOSettings(lr=1e-4))
        chat = LocalChat(policy)                       # rollouts sample from the policy
        res = chat.chat(messages, temperature=1.0, max_tokens=32)
        s = Sample(res.raw.prompt_ids, res.raw.token_ids, reward=1.0, group="task-1")
        report = policy.step([s, ...])                 # one GRPO update
        policy.save("policy/"); LoraPolicy.load("policy/", engine)
    """

    def __init__(self, engine: Any, settings: GRPOSettings | None = None, *,
                 stop_strings: Sequence[str] = ()) -> None:
        import torch
        from peft import LoraConfig, get_peft_model

        from memos.parametric.artifact import fingerprint_dict
        from memos.parametric.distill import load_frozen_copy, seeded

        self.settings = settings or GRPOSettings()
        self.settings.check()
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.fingerprint = fingerprint_dict(engine)
        self.stop_strings: tuple[str, ...] = tuple(stop_strings)
        """Generation stops right after any of these strings (their tokens stay in the completion)."""
        base = load_frozen_copy(engine)
        cfg = LoraConfig(r=self.settings.rank, lora_alpha=self.settings.alpha, lora_dropout=0.0, bias="none",
                         target_modules=list(self.settings.target_modules), task_type="CAUSAL_LM")
        with seeded(self.settings.seed):
            self._peft = get_peft_model(base, cfg)
        self._peft.eval()
        self._params = [p for p in self._peft.parameters() if p.requires_grad]
        self._opt = torch.optim.AdamW(self._params, lr=self.settings.lr, weight_decay=0.0)
        self._stop_ids = self._collect_stop_ids()
        self._calls = 0
        self.history: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- the engine surface LocalChat uses
    def _render_chat(self, messages: list[dict[str, str]], *, reply: bool = False) -> str:
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=reply))

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def generate_ids(self, ids: Sequence[int], *, max_tokens: int = 64, temperature: float = 0.0,
                     seed: int | None = None, **_: Any) -> Sampled:
        """Sample up to ``max_tokens`` tokens after ``ids`` with the adapter on (greedy at temperature 0).

        Successive calls use successive seeds (``settings.seed`` based), so the rollouts of a group differ
        and a run is reproducible.
        """
        import torch
        from transformers import GenerationConfig

        from memos.parametric.distill import seeded

        if not ids:
            raise InvalidInput("cannot sample after an empty prompt", field="ids")
        if max_tokens < 1 or temperature < 0:
            raise InvalidInput("max_tokens must be >= 1 and temperature >= 0", field="max_tokens")
        if seed is None:
            seed = self.settings.seed * 1_000_003 + self._calls
        self._calls += 1
        sample = temperature > 0
        # Sampling from the full distribution (no top-k / top-p): the update scores tokens under it.
        gen = GenerationConfig(max_new_tokens=max_tokens, do_sample=sample, temperature=temperature if sample else None,
                               top_k=0 if sample else None, top_p=1.0 if sample else None,
                               eos_token_id=sorted(self._stop_ids),
                               pad_token_id=self.tokenizer.pad_token_id or sorted(self._stop_ids)[0],
                               stop_strings=list(self.stop_strings) or None)
        prompt = torch.tensor([list(ids)], dtype=torch.long)
        with torch.no_grad(), seeded(seed):
            out = self._peft.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), generation_config=gen,
                                      tokenizer=self.tokenizer if self.stop_strings else None)
        new = [int(t) for t in out[0, prompt.shape[1]:]]
        stop = "max_tokens"
        if new and new[-1] in self._stop_ids:
            stop = "eos"
        elif self.stop_strings and any(s in self.decode(new) for s in self.stop_strings):
            stop = "stop_string"
        text = self.decode(new[:-1] if stop == "eos" else new)
        return Sampled(text=text, token_ids=tuple(new), prompt_ids=tuple(int(i) for i in ids), stop=stop,
                       tokens=len(new))

    # ---------------------------------------------------------------------------------- training
    def token_logprobs(self, prompt_ids: Sequence[int], completion_ids: Sequence[int], *,
                       base: bool = False) -> Any:
        """log π(o_t | prompt, o_<t) for every completion token (a ``[T]`` tensor, with grad unless
        ``base``, which switches the adapter off and runs without grad)."""
        import contextlib

        import torch

        causal_lm = self._peft.base_model.model
        ids = torch.tensor([list(prompt_ids) + list(completion_ids)], dtype=torch.long)
        p, t = len(prompt_ids), len(completion_ids)
        ctx = self._peft.disable_adapter() if base else contextlib.nullcontext()
        grad = torch.no_grad() if base else contextlib.nullcontext()
        with ctx, grad:
            hidden = causal_lm.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state[0]
            # The vocabulary projection only where completion tokens are predicted.
            logits = causal_lm.get_output_embeddings()(hidden[p - 1: p - 1 + t]).float()
            target = torch.tensor(list(completion_ids), dtype=torch.long)
            return torch.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]

    def step(self, samples: Sequence[Sample]) -> GRPOStep:
        """One GRPO update on ``samples`` (see the module docstring); returns what it did."""
        import torch

        from memos.telemetry import span

        started = time.perf_counter()
        if not samples:
            raise InvalidInput("no samples to learn from", field="samples")
        for s in samples:
            if not s.prompt_ids or not s.completion_ids:
                raise InvalidInput("every sample needs prompt and completion ids", field="samples")
            if s.mask is not None and len(s.mask) != len(s.completion_ids):
                raise InvalidInput("a sample's mask differs in length from its completion", field="mask")
        cfg = self.settings
        rewards = [float(s.reward) for s in samples]
        adv = group_advantages(rewards, [s.group for s in samples], scale=cfg.scale_rewards)
        masks = [torch.tensor(s.loss_mask(), dtype=torch.float32) for s in samples]
        active = [i for i, a in enumerate(adv) if a != 0.0 and float(masks[i].sum()) > 0]
        n = len(samples)
        mean = sum(rewards) / n
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)
        tokens = sum(int(m.sum()) for m in masks)
        loss_total, grad_norm = 0.0, 0.0
        with span("rl.grpo_step", items=n, active=len(active)):
            if active:
                old = {i: self.token_logprobs(samples[i].prompt_ids, samples[i].completion_ids).detach()
                       for i in active} if cfg.epochs > 1 else {}
                for _ in range(cfg.epochs):
                    self._opt.zero_grad(set_to_none=True)
                    loss_total = 0.0
                    for i in active:
                        s, a, m = samples[i], adv[i], masks[i]
                        lp = self.token_logprobs(s.prompt_ids, s.completion_ids)
                        ratio = torch.exp(lp - old.get(i, lp.detach()))
                        surrogate = torch.minimum(ratio * a, torch.clamp(ratio, 1 - cfg.clip_eps, 1 + cfg.clip_eps) * a)
                        per_token = -surrogate
                        if cfg.kl_beta > 0:
                            ref = self.token_logprobs(s.prompt_ids, s.completion_ids, base=True)
                            per_token = per_token + cfg.kl_beta * (torch.exp(ref - lp) - (ref - lp) - 1)
                        loss = (per_token * m).sum() / m.sum() / n
                        loss.backward()
                        loss_total += float(loss.detach())
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(self._params, cfg.max_grad_norm))
                    self._opt.step()
                self._opt.zero_grad(set_to_none=True)
        report = GRPOStep(step=len(self.history) + 1, samples=n, groups=len({s.group for s in samples}),
                          mean_reward=mean, reward_std=std, loss=loss_total, grad_norm=grad_norm, tokens=tokens,
                          seconds=time.perf_counter() - started, skipped=not active,
                          advantages=[round(a, 6) for a in adv])
        self.history.append({k: v for k, v in asdict(report).items() if k != "advantages"})
        return report

    def trainable_state(self) -> dict[str, Any]:
        """A copy of every trainable tensor (the LoRA matrices), by parameter name."""
        return {name: p.detach().clone() for name, p in self._peft.named_parameters() if p.requires_grad}

    # ----------------------------------------------------------------------------- persistence
    def save(self, folder: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
        """Write the policy to ``folder`` (created): the peft adapter files and ``policy.json``."""
        from safetensors.torch import save_file

        from memos.parametric.lora import _peft_files

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors, adapter_config = _peft_files(self._peft)
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "adapter_model.safetensors"),
                  metadata={"format": "pt"})
        (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
        settings = asdict(self.settings)
        settings["target_modules"] = list(self.settings.target_modules)
        doc = {"format": POLICY_FORMAT, "version": POLICY_VERSION, "model": self.fingerprint, "settings": settings,
               "stop_strings": list(self.stop_strings), "history": self.history, "meta": dict(meta or {})}
        (folder / "policy.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str], engine: Any) -> LoraPolicy:
        """A policy saved by :meth:`save`, on ``engine``'s model.

        Raises:
            InvalidInput: ``folder`` holds no saved policy.
            CorruptPayload: its files are unreadable.
            ModelMismatch: it was trained on another base model.
        """
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        from memos.parametric.artifact import check_model

        folder = Path(folder)
        doc_path, weights = folder / "policy.json", folder / "adapter_model.safetensors"
        if not doc_path.is_file() or not weights.is_file():
            raise InvalidInput(f"no saved policy in {folder} (policy.json + adapter_model.safetensors)",
                               field="policy")
        try:
            doc = json.loads(doc_path.read_text())
        except (OSError, ValueError) as exc:
            raise CorruptPayload(str(doc_path), f"not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != POLICY_FORMAT:
            raise CorruptPayload(str(doc_path), f"not a {POLICY_FORMAT} policy")
        check_model(engine, doc, what=f"policy {folder}")
        raw = dict(doc.get("settings") or {})
        raw["target_modules"] = tuple(raw.get("target_modules", GRPOSettings.target_modules))
        try:
            settings = GRPOSettings(**raw)
        except TypeError as exc:
            raise CorruptPayload(str(doc_path), f"bad settings: {exc}") from exc
        policy = cls(engine, settings, stop_strings=doc.get("stop_strings", ()))
        try:
            tensors = load_file(str(weights))
        except (OSError, ValueError, RuntimeError) as exc:
            raise CorruptPayload(str(weights), f"unreadable tensors: {exc}") from exc
        result = set_peft_model_state_dict(policy._peft, tensors)
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise CorruptPayload(str(weights), f"tensors that fit no adapter layer: {unexpected[:3]}")
        policy.history = list(doc.get("history") or [])
        return policy

    # ------------------------------------------------------------------------------- internals
    def _collect_stop_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        tok = self.tokenizer
        if tok.eos_token_id is not None:
            ids.add(int(tok.eos_token_id))
        for special in ("<|im_end|>", "<|endoftext|>"):
            tid = tok.convert_tokens_to_ids(special)
            if isinstance(tid, int) and tid != tok.unk_token_id:
                ids.add(tid)
        return frozenset(ids)


__all__ = ["GRPOSettings", "GRPOStep", "LoraPolicy", "Sample", "Sampled", "group_advantages"]
