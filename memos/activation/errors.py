"""Errors raised by activation-memory payload handling.

Temporary home: these two classes move to :mod:`memos.errors` (under ``MemosError``); every other
module imports them from here only, so the move is a one-line change.

    _Base
     ├── ModelMismatch    a KV cache was made by another model / tokenizer than the one asked for
     └── CorruptPayload   a payload file is missing, truncated, altered or fails its checksum
"""

from __future__ import annotations

from typing import Any


class _Base(Exception):
    """Stand-in root until these join the ``memos.errors.MemosError`` tree."""


class ModelMismatch(_Base):
    """A cache's model fingerprint differs from the fingerprint it is being loaded for.

    Attributes:
        expected: the fingerprint the caller (engine) required.
        got: the fingerprint recorded in the payload.
    """

    def __init__(self, expected: Any, got: Any) -> None:
        self.expected = expected
        self.got = got
        # Name only the differing fields: full fingerprints are long hashes nobody can compare.
        detail = ", ".join(
            f"{name}: expected {getattr(expected, name, None)!r}, got {getattr(got, name, None)!r}"
            for name in _differing_fields(expected, got)
        )
        super().__init__(f"model fingerprint mismatch ({detail or 'different fingerprints'})")


class CorruptPayload(_Base):
    """A stored payload cannot be trusted: missing, truncated, malformed or failing its checksum.

    Attributes:
        path: the payload file.
        reason: what check failed, in words.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"corrupt payload {self.path}: {reason}")


def _differing_fields(expected: Any, got: Any) -> list[str]:
    # Fingerprints are pydantic models; anything else just reports "different".
    dump_e = getattr(expected, "model_dump", None)
    dump_g = getattr(got, "model_dump", None)
    if dump_e is None or dump_g is None:
        return []
    a, b = dump_e(), dump_g()
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
