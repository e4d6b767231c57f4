"""The parametric tests train small adapters: one torch thread (see ``one_torch_thread``)."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(one_torch_thread):
    yield
