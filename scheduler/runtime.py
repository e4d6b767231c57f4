"""Booting, joining, connecting to and tearing down a memos cluster on Ray.

``memos up --workers N``  -> ``ray start --head`` (GCS on port 6380, Ray client on 10001), a detached
registry actor holding the cluster config, and N detached kernel workers pinned to this node.
``memos up --address HEAD --workers M`` -> ``ray start --address HEAD`` (this machine joins as a node) and
M more workers pinned to the new node. ``memos down`` kills the memos actors and stops Ray here.
``MemOS.connect("ray://HOST:10001")`` or ``connect("auto")`` -> a :class:`scheduler.client.ClusterMemOS`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from memos.errors import BackendError, InvalidInput, MissingExtra
from memos.telemetry import otel_env
from scheduler.actors import NAMESPACE, REGISTRY, remote_classes, worker_actor_name

GCS_PORT = 6380
CLIENT_PORT = 10001
STATE_FILE = "cluster.json"


def _token_auth() -> None:
    """Ray's token auth, explicitly on: the same token (``~/.ray/auth_token``, or ``RAY_AUTH_TOKEN``) must be
    present on every node and client; a second machine joining needs a copy of it."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def _has_token() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return os.path.isfile(path)


def _ensure_token(ray_cli: str) -> None:
    """A head started on a machine without a token generates one (``~/.ray/auth_token``, mode 0600 by
    Ray); nodes and clients joining from elsewhere need a copy of it."""
    if not _has_token():
        _run([ray_cli, "get-auth-token", "--generate"])  # prints the token: captured, never shown


def _ray() -> Any:
    _token_auth()
    try:
        import ray
    except ImportError as exc:
        raise MissingExtra("ray", "ray") from exc
    return ray


def _ray_cli() -> str:
    exe = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")
    if exe is None:
        raise MissingExtra("ray", "ray")
    return exe


def _run(args: list[str]) -> str:
    _token_auth()
    out = subprocess.run(args, capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        raise BackendError("ray", f"{' '.join(args[:3])} failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return out.stdout


def _init(address: str) -> Any:
    ray = _ray()
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=False)
    return ray


def _pinned(node: str) -> dict[str, Any]:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}


def _alive_nodes(ray: Any) -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


def up(*, workers: int, redis_url: str, home: Path, address: str | None = None, prefix: str = "memos:",
       placement: str = "least-loaded") -> dict[str, Any]:
    if workers < 0 or workers > 64:
        raise InvalidInput("--workers must be within 0..64", field="workers")
    import redis

    try:
        redis.Redis.from_url(redis_url).ping()
    except redis.RedisError as exc:
        raise BackendError("redis", f"cannot reach {redis_url}: {exc}") from exc
    ray_cli = _ray_cli()
    if address is None:
        _ensure_token(ray_cli)
        _run([ray_cli, "start", "--head", f"--port={GCS_PORT}", f"--ray-client-server-port={CLIENT_PORT}",
              "--include-dashboard=false", "--disable-usage-stats", f"--num-cpus={max(2, os.cpu_count() or 2)}"])
        gcs = f"127.0.0.1:{GCS_PORT}"
        ray = _init(gcs)
        node = ray.get_runtime_context().get_node_id()
    else:
        gcs = address.removeprefix("ray://")
        if ":" not in gcs:
            raise InvalidInput("--address must be HOST:PORT of the Ray head (GCS)", field="address")
        if not _has_token():
            raise InvalidInput("joining a cluster needs its auth token: copy the head's ~/.ray/auth_token to this "
                               "machine (or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH)", field="address")
        ray = _init(gcs)
        before = _alive_nodes(ray)
        _run([ray_cli, "start", f"--address={gcs}", "--disable-usage-stats"])
        deadline = time.monotonic() + 60
        while not (new := _alive_nodes(ray) - before) and time.monotonic() < deadline:
            time.sleep(0.5)
        if len(new) != 1:
            raise BackendError("ray", f"could not identify the node that joined ({len(new)} new nodes)")
        node = new.pop()
    worker_cls, registry_cls = remote_classes()
    config = {"redis_url": redis_url, "prefix": prefix, "cluster_home": str(home), "placement": placement,
              "address": gcs, "client": f"ray://{gcs.split(':')[0]}:{CLIENT_PORT}"}
    try:
        registry = ray.get_actor(REGISTRY, namespace=NAMESPACE)
        config = ray.get(registry.config.remote())
    except ValueError:
        registry = registry_cls.options(name=REGISTRY, namespace=NAMESPACE, lifetime="detached",
                                        get_if_exists=True).remote(config)
    existing = ray.get(registry.workers.remote())
    node_tag = node[:8]
    started = []
    for i in range(workers):
        wid = f"{node_tag}-{len(existing) + i}"
        handle = worker_cls.options(name=worker_actor_name(wid), namespace=NAMESPACE, lifetime="detached",
                                    **_worker_env(), **_pinned(node)).remote(wid, config["cluster_home"], config["redis_url"],
                                                           config["prefix"])
        info = ray.get(handle.info.remote(), timeout=300)
        ray.get(registry.add_worker.remote(wid, info))
        started.append(info)
    home.mkdir(parents=True, exist_ok=True)
    (home / STATE_FILE).write_text(json.dumps({"address": gcs, "client": config["client"]}))
    return {"address": gcs, "client": config["client"], "redis_url": config["redis_url"], "started": started,
            "workers": sorted(ray.get(registry.workers.remote()))}


def _worker_env() -> dict[str, Any]:
    """Actor options handing this process's ``OTEL_*`` variables to a worker (none: no runtime env)."""
    env = otel_env()
    return {"runtime_env": {"env_vars": env}} if env else {}


def down(home: Path) -> dict[str, Any]:
    """Kill the memos actors (if a cluster is reachable) and stop Ray on this machine."""
    state = home / STATE_FILE
    killed: list[str] = []
    if state.exists():
        address = json.loads(state.read_text())["address"]
        ray = _ray()
        try:
            _init(address)
            registry = ray.get_actor(REGISTRY, namespace=NAMESPACE)
            for wid in ray.get(registry.workers.remote()):
                try:
                    h = ray.get_actor(worker_actor_name(wid), namespace=NAMESPACE)
                    ray.kill(h, no_restart=True)
                    killed.append(wid)
                except ValueError:
                    pass  # already gone
                ray.get(registry.remove_worker.remote(wid))
            ray.kill(registry, no_restart=True)
        except (ConnectionError, ValueError, ray.exceptions.RaySystemError):
            pass  # nothing reachable to kill: stopping Ray below still cleans this machine
        finally:
            if ray.is_initialized():
                ray.shutdown()
        state.unlink()
    _run([_ray_cli(), "stop", "--force"])
    return {"stopped": True, "workers_killed": killed}


def connect(address: str) -> Any:
    """A ClusterMemOS for ``ray://host:port``, ``host:port`` (GCS) or ``auto``."""
    from scheduler.client import ClusterKernel, ClusterMemOS

    ray = _init(address)
    deadline = time.monotonic() + 30
    while True:
        try:
            registry = ray.get_actor(REGISTRY, namespace=NAMESPACE)
            break
        except ValueError:
            if time.monotonic() > deadline:
                raise BackendError("ray", f"no memos cluster at {address} (run `memos up`)") from None
            time.sleep(0.5)
    return ClusterMemOS(ClusterKernel(registry, ray.get(registry.config.remote())))


class RayRuntime:
    """Registered as the ``ray`` runtime: ``MemOS.connect`` calls ``RayRuntime(url).connect()``."""

    name: ClassVar[str] = "ray"

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.url = url

    def connect(self) -> Any:
        return connect(self.url)
