"""LoRA adapters distilled from plaintext memories (format ``peft-lora``).

:class:`LoraTrainer` turns a list of statements into training pairs (:mod:`memos.parametric.distill`),
trains a peft LoRA adapter on a **private copy** of the engine's model (``engine.model`` is never
touched, so the served backbone stays bit-identical and concurrent generations are unaffected) with the
loss on answer tokens only, and returns an :class:`~memos.parametric.artifact.Artifact`: the adapter's
tensors exactly as ``peft.save_pretrained`` writes them, its ``adapter_config.json`` in the manifest,
the base-model fingerprint and the source memories.

:func:`materialize_lora` unpacks such an artifact into a peft adapter folder
(``adapter_model.safetensors`` + ``adapter_config.json``) that ``engine.generate(adapters=[folder])``
hot-swaps; it raises :class:`~memos.errors.ModelMismatch` for an adapter trained on another base model.

Training is deterministic for a seed on one machine (seeded adapter init, seeded example order, no
dropout); across CPUs, float reductions may differ in the last bits.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memos.errors import InvalidInput
from memos.parametric.artifact import Artifact, fingerprint_dict, read_artifact, write_artifact
from memos.parametric.distill import (
    Example,
    anchor_pairs,
    answer_loss,
    batches,
    encode_example,
    examples_from_facts,
    layer_inputs,
    load_frozen_copy,
    only_layers_from,
    seeded,
)

FORMAT = "peft-lora"
#: Every linear layer of a Llama block: facts live mostly in the MLPs, phrasing in attention.
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """How an adapter is trained. Defaults memorise ~20 short facts on SmolLM2-135M in one run."""

    rank: int = 16
    """LoRA rank r (adapter bytes grow linearly with it)."""
    alpha: float = 32.0
    """LoRA scaling numerator: the update is ``alpha / rank * B @ A``."""
    lr: float = 3e-3
    """AdamW learning rate (decays linearly to a tenth over the run)."""
    steps: int = 30
    """Optimizer steps."""
    batch_size: int = 32
    """Training pairs per step (pairs are cycled by seeded epochs; 4 pairs per memory)."""
    seed: int = 0
    """Seeds the adapter initialisation and the example order."""
    target_modules: tuple[str, ...] = ALL_LINEAR
    """Names of the linear layers that get an adapter."""
    layers: tuple[int, ...] | str = "upper-half"
    """Decoder layers to adapt: ``"upper-half"`` (default), ``"all"`` or explicit indices. Adapting
    only upper layers lets training run the frozen lower layers once instead of every step (about
    twice as fast); short facts are memorised as well either way on SmolLM2-135M (benchmark)."""
    max_grad_norm: float = 1.0
    """Gradient clipping."""
    anchors: int = 16
    """Everyday prompts whose base-model answers are trained alongside (0: none); they keep the
    adapter from changing unrelated answers (see :func:`~memos.parametric.distill.anchor_pairs`)."""
    anchors_per_step: int = 8
    """Anchor pairs added to each step's batch."""
    anchor_tokens: int = 16
    """Length of the base-model answers used as anchor targets."""
    anchor_weight: float = 1.0
    """Weight of the anchor loss against the memories' loss."""

    def check(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1 or not self.lr > 0:
            raise InvalidInput("rank, steps and batch_size must be >= 1 and lr > 0", field="settings")
        if isinstance(self.layers, str) and self.layers not in ("all", "upper-half"):
            raise InvalidInput(f"layers must be 'all', 'upper-half' or indices, not {self.layers!r}",
                               field="layers")

    def layer_indices(self, n_layers: int) -> list[int]:
        """The adapted layers of an ``n_layers``-layer model, sorted."""
        if self.layers == "all":
            return list(range(n_layers))
        if self.layers == "upper-half":
            return list(range(n_layers // 2, n_layers))
        picked = sorted({int(i) for i in self.layers})
        if not picked or picked[0] < 0 or picked[-1] >= n_layers:
            raise InvalidInput(f"layers {list(self.layers)} outside 0..{n_layers - 1}", field="layers")
        return picked


@dataclass
class TrainingReport:
    """What a training run did (stored in the manifest's ``training`` entry)."""

    steps: int
    examples: int
    seconds: float
    first_loss: float
    final_loss: float
    settings: dict[str, Any] = field(default_factory=dict)


class LoraTrainer:
    """Distil statements into a LoRA adapter for ``engine``'s model.

    Example::

        trainer = LoraTrainer(engine, LoraSettings(steps=30))
        artifact = trainer.train(["Zorblax's pet is a purple llama named Quimby."])
        folder = materialize_lora(save(artifact), cache_dir / "a", engine)
        engine.generate("What is Zorblax's pet?", adapters=[folder], chat=True)
    """

    def __init__(self, engine: Any, settings: LoraSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or LoraSettings()
        self.settings.check()
        self.last_report: TrainingReport | None = None

    def examples(self, facts: Sequence[str]) -> list[Example]:
        """The training pairs for ``facts`` (deterministic)."""
        return examples_from_facts(facts)

    def train(self, facts: Sequence[str], *, sources: Sequence[dict[str, Any]] = (),
              settings: LoraSettings | None = None) -> Artifact:
        """Train an adapter on ``facts`` and return it as an artifact (nothing is written to disk).

        Args:
            facts: the statements to memorise (plaintext memory texts).
            sources: ``[{id, version}]`` of the memories they come from, recorded in the manifest.
            settings: overrides the trainer's settings for this run.
        """
        import torch
        from peft import LoraConfig, get_peft_model

        cfg = settings or self.settings
        cfg.check()
        if not facts:
            raise InvalidInput("no memories to train an adapter on", field="memory_ids")
        tok = self.engine.tokenizer
        examples = self.examples(facts)
        encoded = [encode_example(tok, ex) for ex in examples]
        started = time.perf_counter()
        model = load_frozen_copy(self.engine)
        layers = cfg.layer_indices(model.config.num_hidden_layers)
        start = layers[0]
        # Below the first adapted layer everything is frozen: compute its input once.
        anchors = anchor_pairs(self.engine, cfg.anchors, cfg.anchor_tokens) if cfg.anchors else []
        hidden = layer_inputs(model, start, encoded) if start > 0 else None
        anchor_hidden = layer_inputs(model, start, anchors) if start > 0 and anchors else None
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, bias="none",
                          target_modules=list(cfg.target_modules), layers_to_transform=layers,
                          task_type="CAUSAL_LM")
        with seeded(cfg.seed):
            peft_model = get_peft_model(model, lora)
        params = [p for p in peft_model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - 0.9 * s / max(1, cfg.steps - 1))
        causal_lm = peft_model.base_model.model  # the Llama model with LoRA layers injected
        losses: list[float] = []
        size = min(cfg.batch_size, len(encoded))
        with only_layers_from(causal_lm, start):
            for batch in batches(encoded, size, cfg.steps, cfg.seed, tok.pad_token_id, hidden, anchors=anchors,
                                 anchor_hidden=anchor_hidden, anchors_per_step=cfg.anchors_per_step):
                loss = answer_loss(causal_lm, batch, cfg.anchor_weight)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
        report = TrainingReport(steps=cfg.steps, examples=len(examples), seconds=time.perf_counter() - started,
                                first_loss=losses[0], final_loss=losses[-1], settings=_settings_json(cfg))
        self.last_report = report
        tensors, adapter_config = _peft_files(peft_model)
        manifest = {
            "model": fingerprint_dict(self.engine),
            "sources": [dict(s) for s in sources],
            "config": {"adapter_config": adapter_config},
            "training": asdict(report),
        }
        return Artifact(FORMAT, tensors, manifest)


def _settings_json(cfg: LoraSettings) -> dict[str, Any]:
    data = asdict(cfg)
    data["target_modules"] = list(cfg.target_modules)
    data["layers"] = cfg.layers if isinstance(cfg.layers, str) else list(cfg.layers)
    return data


def _peft_files(peft_model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The adapter exactly as peft saves it: (tensors of adapter_model.safetensors, adapter_config)."""
    from safetensors.torch import load_file

    with tempfile.TemporaryDirectory(prefix="memos-lora-") as tmp:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        tensors = load_file(os.path.join(tmp, "adapter_model.safetensors"))
        config = json.loads(Path(tmp, "adapter_config.json").read_text())
    # The training copy's folder means nothing elsewhere; the manifest's fingerprint names the base.
    config["base_model_name_or_path"] = None
    return tensors, config


def save_lora(artifact: Artifact, path: str | os.PathLike[str]) -> dict[str, Any]:
    """Write a LoRA artifact as one safetensors file; returns ``{"bytes", "sha256"}``."""
    if artifact.format != FORMAT:
        raise InvalidInput(f"not a LoRA artifact: {artifact.format}", field="format")
    return write_artifact(path, artifact)


def materialize_lora(path: str | os.PathLike[str], folder: str | os.PathLike[str], engine: Any, *,
                     sha256: str | None = None) -> Path:
    """Unpack the LoRA artifact file ``path`` into the peft adapter folder ``folder`` for ``engine``.

    Written under a temporary name and renamed into place, so a concurrent reader never sees a
    half-written folder; an existing complete folder is reused.

    Raises:
        ModelMismatch: the adapter was trained on another base model than ``engine``'s.
        CorruptPayload: the file is unreadable or its sha256 differs from ``sha256``.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    artifact = read_artifact(path, expected_format=FORMAT, sha256=sha256, model=engine)
    if (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        save_file(artifact.tensors, str(tmp / "adapter_model.safetensors"), metadata={"format": "pt"})
        config = artifact.config["adapter_config"]
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        (tmp / "memos-manifest.json").write_text(json.dumps(artifact.manifest, indent=2, sort_keys=True))
        try:
            os.replace(tmp, folder)
        except OSError:
            # Another process finished the same folder first (rename onto a non-empty dir fails).
            if not (folder / "adapter_config.json").is_file():
                raise
    finally:
        if tmp.exists():
            for child in tmp.iterdir():
                child.unlink()
            tmp.rmdir()
    return folder
