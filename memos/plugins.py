"""The plugin manager: loads the ``memos`` entry-point group and indexes what plugins register.

* Entry points of the ``memos`` distribution itself (the first-party backends) always load.
* Other distributions' entry points load unless ``MEMOS_DISABLE_PLUGIN_AUTOLOAD`` is set; if
  ``MEMOS_PLUGINS`` is set (comma-separated entry-point names) only those load.
* ``registry("backends")`` returns ``{name: class}`` from ``memos_register_backends`` and fails with
  :class:`memos.errors.PluginError` on a duplicate name.
"""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any

import pluggy

from memos import hookspecs
from memos.config import env_flag, env_list
from memos.errors import PluginError

_GROUP = "memos"
_FIRST_PARTY = "memos"
_lock = threading.Lock()
_manager: pluggy.PluginManager | None = None
_loaded: list[dict[str, str]] = []
_unavailable: list[dict[str, str]] = []


class _Builtins:
    """Registers the embedders that live inside the core package."""

    @hookspecs.hookimpl
    def memos_register_embedders(self) -> list[type]:
        from memos.embed import BUILTIN_EMBEDDERS

        return list(BUILTIN_EMBEDDERS)

    @hookspecs.hookimpl
    def memos_register_engines(self) -> list[type]:
        from memos.engines.local import LocalEngine
        from memos.engines.vllm import VLLMEngine  # imports vllm only when constructed

        return [LocalEngine, VLLMEngine]

    @hookspecs.hookimpl
    def memos_register_policies(self) -> list[type]:
        from memos.reading.reconcile import RECONCILE_POLICIES
        from memos.residency import BUILTIN_POLICIES

        return [*BUILTIN_POLICIES, *RECONCILE_POLICIES]


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=_GROUP))


def get_manager() -> pluggy.PluginManager:
    global _manager
    with _lock:
        if _manager is None:
            pm = pluggy.PluginManager(_GROUP)
            pm.add_hookspecs(hookspecs)
            pm.register(_Builtins(), name="memos.builtins")
            allow = env_list("MEMOS_PLUGINS")
            autoload = not env_flag("MEMOS_DISABLE_PLUGIN_AUTOLOAD")
            for ep in _entry_points():
                dist = ep.dist.name if ep.dist is not None else "?"
                first_party = dist == _FIRST_PARTY
                if not first_party and (not autoload or (allow is not None and ep.name not in allow)):
                    continue
                if pm.get_plugin(ep.name) is not None:
                    continue
                try:
                    plugin = ep.load()
                except ImportError as exc:
                    if first_party and exc.name and not exc.name.startswith(ep.value):
                        # an optional extra is not installed (e.g. redis without memos[redis]): the rest
                        # of memos works; `memos plugins list` says what is missing.
                        _unavailable.append({"name": ep.name, "module": ep.value, "missing": exc.name})
                        continue
                    raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to import: {exc}",
                                      plugin=ep.name) from exc
                pm.register(plugin, name=ep.name)
                _loaded.append({"name": ep.name, "module": ep.value, "distribution": dist})
            _manager = pm
        return _manager


def reset_manager() -> None:
    """Forget the loaded plugins (tests that change the environment)."""
    global _manager
    with _lock:
        _manager = None
        _loaded.clear()
        _unavailable.clear()


def registry(kind: str) -> dict[str, type]:
    """``kind`` is the hook suffix: backends, vector_indexes, blob_stores, embedders, engines, policies ..."""
    pm = get_manager()
    hook = getattr(pm.hook, f"memos_register_{kind}", None)
    if hook is None:
        raise PluginError(f"unknown registry {kind!r}")
    out: dict[str, type] = {}
    for impl, classes in zip(reversed(hook.get_hookimpls()), hook()):
        for cls in classes or []:
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"{cls!r} registered for {kind} has no name attribute", plugin=impl.plugin_name)
            if name in out and out[name] is not cls:
                raise PluginError(f"two plugins register {kind} named {name!r}: {out[name]!r} and {cls!r}",
                                  plugin=impl.plugin_name)
            out[name] = cls
    return out


def lookup(kind: str, name: str) -> type:
    found = registry(kind)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise PluginError(f"no {kind[:-1] if kind.endswith('s') else kind} named {name!r} (installed: {known})",
                          plugin=name)
    return found[name]


def loaded_plugins() -> list[dict[str, Any]]:
    get_manager()
    return list(_loaded)


def unavailable_plugins() -> list[dict[str, Any]]:
    """First-party plugins skipped because an optional dependency is missing."""
    get_manager()
    return list(_unavailable)


def call_before(op: str, cube: str | None, principal: str | None, args: dict[str, Any]) -> None:
    get_manager().hook.memos_before_operation(op=op, cube=cube, principal=principal, args=args)


def call_after(op: str, cube: str | None, principal: str | None, result: Any) -> None:
    get_manager().hook.memos_after_operation(op=op, cube=cube, principal=principal, result=result)
