"""Running a model-written program on a list of inputs, in a child process.

The process side is L2MAC's sandbox (:func:`memos_l2mac.sandbox.run_in_sandbox`: a fresh temporary folder
as working directory, a scrubbed environment, CPU/address-space/file-size limits, a wall-clock timeout).
On top of it :mod:`memos_arcmemo.harness`, in the child, before the program runs:

* lowers the address-space limit to ``memory_mb``;
* moves into an empty network namespace, where the kernel allows it (root, or user namespaces);
* restricts itself with Landlock, where the kernel offers it (Linux 5.13+): reads only under the
  interpreter's own prefixes, reads and writes only in the folder, no TCP bind/connect (ABI 4+), no
  signals to processes outside the sandbox (ABI 6+). This is the kernel-enforced file boundary;
* installs a Python audit hook that refuses sockets, new processes, ``ctypes`` and file access outside
  the folder (reads of the interpreter's files excepted), with a clear ``PermissionError: sandbox: ...``.

:attr:`ProgramRun.isolation` lists the layers that were in force. Without Landlock and a network
namespace (an old kernel, no privileges) only the audit hook stands between the program and the files
and network, and an in-process hook is not a boundary against code written to escape it: run untrusted
models inside a container.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from memos.errors import InvalidInput

MAX_MEMORY_MB = 2048  # the address-space ceiling the process sandbox sets; the harness can only lower it


@dataclass(frozen=True)
class CallResult:
    """One input: the program's output (a JSON value), or the error it raised."""

    ok: bool
    output: Any = None
    error: str | None = None


@dataclass(frozen=True)
class ProgramRun:
    """A sandboxed run of a program over several inputs."""

    calls: tuple[CallResult, ...] = ()
    error: str | None = None
    """Set when the run as a whole failed: the program did not load, timed out or was killed."""
    timed_out: bool = False
    stdout: str = ""
    """What the program printed (its end)."""
    network_namespace: bool = False
    """Whether the child ran in an empty network namespace (besides the audit hook)."""
    isolation: tuple[str, ...] = field(default=())
    """The layers that were in force: ``process``, ``rlimits``, ``audit-hook``, and where the kernel allows
    them ``netns`` (empty network namespace) and ``landlock`` (file system and TCP restricted)."""

    @property
    def ok(self) -> bool:
        return self.error is None and all(c.ok for c in self.calls)


def _harness_source() -> str:
    return resources.files("memos_arcmemo").joinpath("harness.py").read_text(encoding="utf-8")


def run_program(source: str, inputs: Sequence[Any], *, entry: str = "transform", time_limit_s: float = 10.0,
                memory_mb: int = 1024, as_array: bool = False, audit_hook: bool = True) -> ProgramRun:
    """Run ``entry(input)`` of ``source`` for every input (JSON values; numpy arrays with ``as_array``).
    ``audit_hook=False`` leaves only the process and kernel layers (to test them alone)."""
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("the program is empty", field="source")
    if not entry.isidentifier():
        raise InvalidInput(f"entry must be a Python identifier, got {entry!r}", field="entry")
    if not 64 <= int(memory_mb) <= MAX_MEMORY_MB:
        raise InvalidInput(f"memory_mb must be within 64..{MAX_MEMORY_MB}, got {memory_mb}", field="memory_mb")
    if not time_limit_s > 0:
        raise InvalidInput(f"time_limit_s must be positive, got {time_limit_s}", field="time_limit_s")
    marker = f"@@arcmemo-result-{secrets.token_hex(8)}@@"
    try:
        job = json.dumps({"inputs": list(inputs), "entry": entry, "memory_mb": int(memory_mb),
                          "as_array": as_array, "marker": marker, "audit_hook": audit_hook})
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"inputs must be JSON values: {exc}", field="inputs") from exc
    from memos_l2mac.sandbox import run_in_sandbox  # langgraph comes with it: import on first run

    files = {"harness.py": _harness_source(), "program.py": source, "job.json": job}
    res = run_in_sandbox(files, ["-I", "harness.py"], time_limit_s)
    isolation = ("process", "rlimits") + (("audit-hook",) if audit_hook else ())
    if res.timed_out:
        return ProgramRun(error=f"timed out after {time_limit_s:g}s (killed)", timed_out=True, isolation=isolation)
    line = next((ln for ln in reversed(res.output.splitlines()) if ln.startswith(marker)), None)
    if line is None:
        tail = res.output.strip()[-600:]
        return ProgramRun(error=f"the program exited (code {res.returncode}) without a result: {tail}",
                          isolation=isolation)
    body = json.loads(line[len(marker):])
    netns = bool(body.get("netns"))
    isolation += (("netns",) if netns else ()) + (("landlock",) if body.get("landlock") else ())
    return ProgramRun(calls=tuple(CallResult(**c) for c in body["calls"]), error=body["load_error"],
                      stdout=body.get("stdout", ""), network_namespace=netns, isolation=isolation)
