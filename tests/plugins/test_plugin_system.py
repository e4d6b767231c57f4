"""The plugin system: entry points, allow-list, autoload switch, CLI commands, operation hooks.

Uses the template plugin in plugins/template (installed by `make setup`, like a third-party package).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from memos import hookspecs
from memos.cli import main
from memos.errors import MemosError
from memos.plugins import get_manager, loaded_plugins, lookup, registry

TESTS = Path(__file__).resolve().parents[1]


def plugins_list(env_extra: dict[str, str]) -> dict:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-m", "memos.cli", "plugins", "list", "--json"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_third_party_plugin_loads_from_entry_point():
    template = next(p for p in loaded_plugins() if p["name"] == "template")
    assert template["distribution"] == "memos-plugin-template"
    assert "round-robin" in registry("policies")


def test_allow_list_and_autoload_switch():
    only_other = plugins_list({"MEMOS_PLUGINS": "something-else"})
    names = {p["name"] for p in only_other["plugins"]}
    assert "template" not in names and "sqlite" in names  # first-party backends always load
    allowed = plugins_list({"MEMOS_PLUGINS": "template"})
    assert "template" in {p["name"] for p in allowed["plugins"]}
    off = plugins_list({"MEMOS_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert "template" not in {p["name"] for p in off["plugins"]}
    assert "round-robin" not in off["registered"]["policies"] and "sqlite" in off["registered"]["backends"]


def test_plugin_adds_cli_command(capsys):
    assert main(["template-hello", "--name", "tests"]) == 0
    assert "hello tests from memos-plugin-template" in capsys.readouterr().out


def test_before_operation_can_refuse_and_after_operation_audits(mos, monkeypatch):
    import memos_plugin_template as tpl

    cube = mos.create_cube("quota")
    monkeypatch.setenv("MEMOS_TEMPLATE_MAX_ADDS", "2")
    cube.add("one")
    cube.add("two")
    head = cube.head
    with pytest.raises(MemosError) as err:
        cube.add("three")
    assert type(err.value).__name__ == "QuotaExceeded" and err.value.to_dict()["error"]["message"]
    assert cube.head == head  # refused before anything was written
    assert ("add", "quota", None) in tpl.AUDIT and ("cube.create", "quota", None) in tpl.AUDIT


def test_registries_cover_every_kind():
    class Kind:
        name = "tabular"

    class KindPlugin:
        @hookspecs.hookimpl
        def memos_register_memory_kinds(self):
            return [Kind]

    pm = get_manager()
    pm.register(KindPlugin(), name="kind-test")
    try:
        assert lookup("memory_kinds", "tabular") is Kind
    finally:
        pm.unregister(name="kind-test")
    assert "local" in registry("engines") and "ray" in registry("runtimes")
    assert "file" in registry("blob_stores") and "faiss" in registry("vector_indexes")
    assert {"minilm", "openai"} <= set(registry("embedders"))


def test_every_hook_is_documented_and_tested():
    specs = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("memos_")]
    assert len(specs) >= 10
    sources = "\n".join(p.read_text() for p in TESTS.rglob("test_*.py"))
    template = (TESTS.parent / "plugins" / "template" / "memos_plugin_template" / "__init__.py").read_text()
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"{name} has no docstring"
        suffix = name.removeprefix("memos_register_")
        tested = name in sources or name in template or f'registry("{suffix}")' in sources \
            or f'lookup("{suffix}"' in sources
        assert tested, f"{name} is not exercised by any test"
