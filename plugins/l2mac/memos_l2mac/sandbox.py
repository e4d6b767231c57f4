"""Running the generated code: each run gets a fresh temporary folder holding the files, a child Python with
a scrubbed environment, CPU/memory/file-size limits and a wall-clock timeout.

This is process isolation, not a security boundary (no network or syscall filtering): run untrusted models
inside a container.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from memos.errors import InvalidInput


@dataclass(frozen=True)
class RunResult:
    ok: bool
    returncode: int | None
    output: str
    timed_out: bool = False


def safe_path(path: str) -> str:
    """A relative POSIX path inside the workspace (no absolute paths, no ``..``)."""
    p = PurePosixPath(str(path).strip().replace("\\", "/"))
    if not str(p) or p.is_absolute() or ".." in p.parts or str(p) in (".", ""):
        raise InvalidInput(f"file path must be relative and stay inside the workspace, got {path!r}", field="path")
    return str(p)


def _limits(time_limit_s: float) -> None:  # runs in the child before exec
    import resource

    cpu = int(time_limit_s) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def run_in_sandbox(files: Mapping[str, str], argv: list[str], time_limit_s: float) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="l2mac-") as tmp:
        for path, content in files.items():
            target = Path(tmp) / safe_path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONHASHSEED": "0", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "NO_COLOR": "1"}
        try:
            proc = subprocess.run([sys.executable, *argv], cwd=tmp, env=env, capture_output=True, text=True,
                                  check=False, timeout=time_limit_s, stdin=subprocess.DEVNULL,
                                  preexec_fn=lambda: _limits(time_limit_s))
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or "") if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
            return RunResult(False, None, out + f"\n[timed out after {time_limit_s:g}s]", timed_out=True)
        return RunResult(proc.returncode == 0, proc.returncode, (proc.stdout + proc.stderr).replace(tmp, "."))


def is_test_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))


def run_tests(files: Mapping[str, str], time_limit_s: float) -> RunResult:
    """pytest over the workspace; "no tests collected" counts as a pass."""
    res = run_in_sandbox(files, ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header",
                                 "-o", "addopts=", "."], time_limit_s)
    if res.returncode == 5:
        return RunResult(True, 0, "no tests collected")
    return res


def check(files: Mapping[str, str], time_limit_s: float) -> RunResult:
    """The L2MAC checker: every Python file compiles, then the tests pass."""
    py = sorted(p for p in files if p.endswith(".py"))
    if py:
        compiled = run_in_sandbox(files, ["-m", "py_compile", *py], time_limit_s)
        if not compiled.ok:
            return RunResult(False, compiled.returncode, "syntax check failed:\n" + compiled.output,
                             compiled.timed_out)
    if not any(is_test_file(p) for p in files):
        return RunResult(True, 0, "all files compile (no test files yet)")
    tests = run_tests(files, time_limit_s)
    return RunResult(tests.ok, tests.returncode, ("tests pass:\n" if tests.ok else "tests failed:\n") + tests.output,
                     tests.timed_out)
