"""Ray Serve application of the memos REST server: the RayService in deploy/kuberay/rayservice.yaml.

Each replica runs inside the memos Ray cluster, connects to it (``MemOS.connect``: the registry that the
worker pods' ``memos up --address`` created) and serves memos' own REST app, ``memos.server.create_app``,
the app of ``memos serve``: API keys, ACL, error bodies and the body-size limit are the same. The memos image
(deploy/docker/Dockerfile) puts this file on PYTHONPATH, so serveConfigV2 names it ``memos_serve:app``.

Environment of the replicas (the worker pods' environment, or the application's runtime_env):
``MEMOS_ADDRESS`` (default ``auto``: the cluster the replica runs in), ``MEMOS_MAX_BODY_BYTES`` (default
2000000), ``OTEL_*`` (traces, as for ``memos serve``).

Deployment glue, not part of the memos package: only ``scheduler/`` imports ray there.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve


def build_asgi_app() -> Any:
    """Called once per replica, when it starts (``serve.ingress`` with a builder function)."""
    from memos import MemOS
    from memos.server import create_app
    from memos.telemetry import configure_from_env

    configure_from_env()
    mos = MemOS.connect(os.environ.get("MEMOS_ADDRESS", "auto"))
    return create_app(mos, max_body_bytes=int(os.environ.get("MEMOS_MAX_BODY_BYTES", "2000000")))


MemosREST = serve.deployment(name="memos-rest")(serve.ingress(build_asgi_app)())
app = MemosREST.bind()
