"""Fixtures of the deployment checks: deploy/validate.py loaded as a module (deploy/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="session")
def validate():
    spec = importlib.util.spec_from_file_location("memos_deploy_validate", DEPLOY / "validate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclass/typing lookups resolve the module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_memos_env(monkeypatch):
    """memos' loader reads MEMOS_* overrides; the checks are about the file alone."""
    for name in ("MEMOS_STORAGE", "MEMOS_STORAGE_URL", "MEMOS_MODELS_DIR", "MEMOS_PRINCIPAL", "MEMOS_HOME"):
        monkeypatch.delenv(name, raising=False)
