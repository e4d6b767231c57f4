"""Embedders: the local MiniLM (real model) and the OpenAI-compatible client (against a loopback server)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest

from memos.embed import MiniLMEmbedder, OpenAIEmbedder
from memos.errors import BackendError


def test_minilm_unit_vectors_and_semantics():
    e = MiniLMEmbedder()
    v = e.embed(["a cat sits on the mat", "a kitten rests on a rug", "quarterly tax filing deadline"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    # batching and length sorting do not change results
    one = e.embed(["quarterly tax filing deadline"])[0]
    assert float(one @ v[2]) > 0.999
    assert e.embed_query("a cat sits on the mat") @ v[0] > 0.999


def test_minilm_queries_run_on_one_thread_batches_on_all(monkeypatch):
    """A query embeds on one thread (no stalls from a second OpenMP thread on a small input); a batch
    uses torch's configured count, which is restored after either."""
    import torch

    e = MiniLMEmbedder()
    e.embed(["load the model"])
    seen = []
    real = e._forward

    def spy(texts):
        seen.append((len(texts), torch.get_num_threads()))
        return real(texts)

    monkeypatch.setattr(e, "_forward", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        e.embed_query("a query nobody asked before")
        e.embed([f"batch text {i}" for i in range(5)])
        assert seen == [(1, 1), (5, 2)]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


class _Handler(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.calls.append({"body": body, "auth": self.headers.get("Authorization")})
        if body["model"] == "broken":
            self.send_response(500)
            self.end_headers()
            return
        # deterministic vectors: bag of characters, so equal texts get equal vectors
        data = [{"index": i, "embedding": [float(t.count(c)) + 0.1 for c in "abcdefgh"]}
                for i, t in reversed(list(enumerate(body["input"])))]
        out = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}/v1"
    srv.shutdown()


def test_openai_embedder_batches_orders_and_authenticates(server):
    _Handler.calls.clear()
    e = OpenAIEmbedder(base_url=server, model="m", api_key="k123", batch_size=2)
    v = e.embed(["abc", "hhh", "aaa"])
    assert v.shape == (3, 8) and e.dim == 8
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert v[2].argmax() == 0 and v[1].argmax() == 7  # rows back in request order
    assert len(_Handler.calls) == 2 and _Handler.calls[0]["auth"] == "Bearer k123"
    e.embed_query("abc")
    e.embed_query("abc")
    assert len(_Handler.calls) == 3  # the second query came from the cache
    with pytest.raises(BackendError):
        OpenAIEmbedder(base_url=server, model="broken").embed(["x"])
    with pytest.raises(BackendError):
        OpenAIEmbedder(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=2).embed(["x"])
