"""Shared fixtures: an embedded memos home per test, the real embedder loaded once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def mos(home):
    from memos import MemOS

    m = MemOS.open(home)
    yield m
    m.close()


@pytest.fixture
def cube(mos):
    return mos.create_cube("alice", owner="alice")
