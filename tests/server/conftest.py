"""Server test fixtures: the REST app in-process (TestClient) and API keys."""

from __future__ import annotations

import pytest


@pytest.fixture
def app(mos):
    from memos.server import create_app

    return create_app(mos)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


@pytest.fixture
def keys(mos):
    """``keys("alice")`` -> Authorization headers for a fresh key of that principal."""
    from memos.server.auth import create_key

    def make(principal: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {create_key(mos, principal)}"}

    return make
