"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis): never a 5xx.

Every operation gets a bounded number of generated requests (valid and invalid bodies, odd query values)
with a valid API key. Path parameters are pinned to a real cube and memory most of the time, so bodies
reach the kernel instead of stopping at a 404. Routes that would load or train a language model (generate,
activations, migrate, adapters, and messages / consolidate, whose ``llm`` may name the local model) keep
random cube names: they are fuzzed up to the checks that run before a model.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error

#: Examples per operation: ~20 operations x 25 requests keeps the module well under a minute.
#: ``MEMOS_FUZZ_EXAMPLES=500`` for a deeper run.
EXAMPLES = int(os.environ.get("MEMOS_FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    """(app, auth headers, seeded memory id) over a fresh embedded home."""
    from memos import MemOS
    from memos.server import create_app
    from memos.server.auth import create_key

    mos = MemOS.open(tmp_path_factory.mktemp("fuzz") / "home")
    mos.create_cube("fuzz", owner="fuzzer")
    seeded = mos.cube("fuzz").add("a seeded memory the fuzzer can reach", metadata={"k": 1})
    headers = {"Authorization": f"Bearer {create_key(mos, 'fuzzer')}"}
    yield create_app(mos, mcp=False), headers, seeded.id
    mos.close()


def _spec() -> dict:
    """The OpenAPI document; building it touches no MemOS, so no home is opened at collection time."""
    from memos.server import create_app

    return create_app(None, mcp=False, insecure_local=True).openapi()  # type: ignore[arg-type]


# Loaded from the document (not ``schemathesis.pytest.from_fixture``, whose lazy mode breaks on pytest 9);
# requests go to the fixture's app through ``case.call(app=...)``.
schema = schemathesis.openapi.from_dict(_spec())
_MODEL_ROUTES = ("/activations", "/migrate", "/adapters", "/retrain", "/messages", "/consolidate")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case, fuzz_env):
    app, headers, memory_id = fuzz_env
    params = case.path_parameters or {}
    deletes_cube = case.method.upper() == "DELETE" and case.path == "/v1/cubes/{cube}"
    if "cube" in params and not deletes_cube and not case.path.endswith(_MODEL_ROUTES):
        params["cube"] = "fuzz"
    if "memory_id" in params:
        params["memory_id"] = memory_id
    response = case.call(headers=headers, app=app)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert set(body["error"]) >= {"type", "message"}, body
