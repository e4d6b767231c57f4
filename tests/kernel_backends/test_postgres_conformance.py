"""The PostgreSQL backend against the conformance suite and the kernel, on a real server (CI starts it).

Each test gets its own schema, dropped afterwards. An unreachable server fails the tests (it does not skip
them): a silently skipped shared backend is how regressions ship.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest

import kernel_backends.postgres as postgres_module
from kernel_backends.postgres import PostgresBackend
from memos.errors import BackendError
from memos.models import MemCube
from memos.plugins import get_manager
from memos.testing.conformance import SharedBackendConformance, _commit, _mem

pytestmark = pytest.mark.services

POSTGRES_URL = os.environ.get("MEMOS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _url(schema: str) -> str:
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}schema={schema}"


@pytest.fixture
def postgres_url():
    """A URL naming a fresh schema; the schema is dropped afterwards."""
    schema = f"memos_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL} (set MEMOS_TEST_POSTGRES_URL or start the "
                    f"server): {exc}", pytrace=False)
    yield _url(schema)
    admin.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))
    admin.close()


class TestPostgresConformance(SharedBackendConformance):
    @pytest.fixture
    def connect(self, postgres_url):
        return lambda: PostgresBackend(postgres_url)

    @pytest.fixture
    def backend(self, postgres_url):
        b = PostgresBackend(postgres_url)
        yield b
        b.close()


def test_bad_schema_and_unreachable_server_are_backend_errors():
    with pytest.raises(BackendError, match="schema"):
        PostgresBackend(_url("Robert'); DROP TABLE x;--"))
    with pytest.raises(BackendError, match="cannot open"):
        PostgresBackend("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")


@pytest.fixture
def postgres_plugin():
    """Register the backend module until pyproject declares its entry point (and undo it afterwards)."""
    pm = get_manager()
    added = pm.get_plugin("postgres") is None
    if added:
        pm.register(postgres_module, name="postgres")
    yield
    if added:
        pm.unregister(name="postgres")


def test_kernel_on_postgres_shared_by_two_homes(postgres_url, postgres_plugin, tmp_path):
    from memos.config import load_settings
    from memos.kernel import open_kernel
    from memos.sdk import MemOS
    from memos.testing.conformance import shared_kernels_scenario

    def open_home(name: str) -> MemOS:
        settings = load_settings(tmp_path / name, storage={"backend": "postgres", "url": postgres_url})
        return MemOS(open_kernel(settings))

    shared_kernels_scenario(open_home)


def test_libpq_options_in_the_url_reach_the_server(postgres_url):
    """memos options are taken out of the query; the rest (spaces and all) goes to libpq unchanged."""
    b = PostgresBackend(postgres_url + "&options=-c%20synchronous_commit%3Doff&application_name=memos%20test")
    with b._pool.connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
        assert conn.execute("SHOW application_name").fetchone()[0] == "memos test"
        assert conn.execute("SHOW search_path").fetchone()[0] == b.schema
    b.close()


def test_a_stored_version_is_never_rewritten(postgres_url):
    """As SQLite's primary key: rewriting (id, version) fails and the batch writes nothing."""
    b = PostgresBackend(postgres_url)
    b.put_cube(MemCube(name="c", owner="o"), create=True)
    _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one")])
    with pytest.raises(BackendError, match="already exists"):
        _commit(b, "c", 1, [_mem("c", "b", 1, 2, "new"), _mem("c", "a", 1, 2, "rewrite")])
    assert b.get_cube("c").head == 1 and [m.text for m in b.history("c", "a")] == ["one"]
    assert b.get_memories("c", ["b"]) == [None]
    b.close()
