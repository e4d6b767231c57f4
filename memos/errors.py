"""Every error memos raises, in one tree.

::

    MemosError
    ├── InvalidInput            bad argument: cube name, empty/oversize text, metadata, filters ...
    │   └── InvalidCubeName
    ├── NotFound
    │   ├── CubeNotFound
    │   ├── MemoryNotFound
    │   └── VersionNotFound
    ├── AlreadyExists
    │   └── CubeExists
    ├── Unauthenticated         no valid API key (REST / MCP)
    ├── AccessDenied            a principal without the needed access to a cube
    ├── Conflict                optimistic concurrency: the cube head moved under a writer
    ├── HomeLocked              another process holds the embedded home
    ├── ModelMismatch           a KV cache / adapter built for another model
    ├── CorruptPayload          a payload blob that is truncated, altered or unreadable
    ├── BackendError            a storage driver failed (the driver's exception is ``__cause__``)
    ├── PluginError             a plugin failed to load or registered a duplicate name
    └── MissingExtra            an optional dependency is not installed (names the pip command)

Errors carry their context as attributes (``cube``, ``memory_id``, ``version`` ...) and
``to_dict()`` gives the ``{"error": {"type", "message"}}`` body used by the CLI and REST.
"""

from __future__ import annotations

from typing import Any


class MemosError(Exception):
    """Root of every memos error."""

    #: HTTP status the REST surface maps this error to.
    status_code: int = 500

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"type": type(self).__name__, "message": self.message}}

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take their context as constructor arguments, so rebuild from the message and the
        # context instead of ``cls(*args)``: errors then cross process boundaries (Ray, multiprocessing).
        return _rebuild, (type(self), self.message, self.context)


def _rebuild(cls: type[MemosError], message: str, context: dict[str, Any]) -> MemosError:
    err = cls.__new__(cls)
    MemosError.__init__(err, message, **context)
    return err


class InvalidInput(MemosError):
    status_code = 422

    def __init__(self, message: str, *, field: str | None = None, **context: Any) -> None:
        super().__init__(message, field=field, **context)


class InvalidCubeName(InvalidInput):
    def __init__(self, name: object) -> None:
        super().__init__(
            f"invalid cube name {name!r}: use 1-64 characters [a-z0-9._-], starting with a letter or digit",
            field="name",
            cube=name,
        )


class NotFound(MemosError):
    status_code = 404


class CubeNotFound(NotFound):
    def __init__(self, cube: str) -> None:
        super().__init__(f"cube {cube!r} does not exist", cube=cube)


class MemoryNotFound(NotFound):
    def __init__(self, cube: str, memory_id: str) -> None:
        super().__init__(f"memory {memory_id!r} not found in cube {cube!r}", cube=cube, memory_id=memory_id)


class VersionNotFound(NotFound):
    def __init__(self, cube: str, memory_id: str, version: int, latest: int | None = None) -> None:
        hint = f" (versions 1..{latest})" if latest else ""
        super().__init__(
            f"memory {memory_id!r} in cube {cube!r} has no version {version}{hint}",
            cube=cube,
            memory_id=memory_id,
            version=version,
            latest=latest,
        )


class AlreadyExists(MemosError):
    status_code = 409


class CubeExists(AlreadyExists):
    def __init__(self, cube: str) -> None:
        super().__init__(f"cube {cube!r} already exists", cube=cube)


class Unauthenticated(MemosError):
    """No API key, or one that is malformed, unknown or revoked (HTTP 401)."""

    status_code = 401

    def __init__(self, message: str = "a valid API key is required: Authorization: Bearer <key>") -> None:
        super().__init__(message)


class AccessDenied(MemosError):
    status_code = 403

    def __init__(self, principal: str | None, cube: str, access: str) -> None:
        super().__init__(
            f"principal {principal!r} has no {access} access to cube {cube!r}",
            principal=principal,
            cube=cube,
            access=access,
        )


class Conflict(MemosError):
    status_code = 409

    def __init__(self, cube: str, expected_head: int, actual_head: int) -> None:
        super().__init__(
            f"cube {cube!r} moved to head {actual_head} while a write expected {expected_head}",
            cube=cube,
            expected_head=expected_head,
            actual_head=actual_head,
        )


class HomeLocked(MemosError):
    status_code = 423

    def __init__(self, home: str, holder: str | None = None) -> None:
        who = f" (held by {holder})" if holder else ""
        super().__init__(
            f"memos home {home!r} is open in another process{who}; close it or use another --home",
            home=home,
            holder=holder,
        )


class ModelMismatch(MemosError):
    status_code = 409

    def __init__(self, expected: Any, got: Any, what: str = "payload") -> None:
        diff = _field_diff(expected, got)
        detail = diff or f"{got!r}, not {expected!r}"
        super().__init__(f"{what} was built for another model: {detail}", expected=expected, got=got)


def _field_diff(expected: Any, got: Any) -> str:
    """``field: got != expected`` for the fields of two models (or dicts) that differ."""
    dump = lambda v: v.model_dump() if hasattr(v, "model_dump") else v  # noqa: E731
    e, g = dump(expected), dump(got)
    if not isinstance(e, dict) or not isinstance(g, dict):
        return ""
    return "; ".join(f"{k}: {g.get(k)!r} (expected {e.get(k)!r})" for k in sorted(set(e) | set(g))
                     if e.get(k) != g.get(k))


class CorruptPayload(MemosError):
    status_code = 500

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"payload {path!r} is corrupt: {reason}", path=path, reason=reason)


class BackendError(MemosError):
    status_code = 503

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend} backend: {message}", backend=backend)


class PluginError(MemosError):
    def __init__(self, message: str, plugin: str | None = None) -> None:
        super().__init__(message, plugin=plugin)


class MissingExtra(MemosError):
    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module!r} is not installed: pip install 'memos[{extra}]'",
            extra=extra,
            module=module,
        )


__all__ = sorted(
    [
        "AccessDenied",
        "AlreadyExists",
        "BackendError",
        "Conflict",
        "CorruptPayload",
        "CubeExists",
        "CubeNotFound",
        "HomeLocked",
        "InvalidCubeName",
        "InvalidInput",
        "MemoryNotFound",
        "MemosError",
        "MissingExtra",
        "ModelMismatch",
        "NotFound",
        "PluginError",
        "Unauthenticated",
        "VersionNotFound",
    ]
)
