"""API keys for the REST server: ``Authorization: Bearer mk_<id>_<secret>`` -> principal.

A key is ``mk_<id>_<secret>``: ``id`` (16 hex digits) names the stored record, so a lookup is one
read by primary key; ``secret`` is 32 random bytes (URL-safe base64). Only the SHA-256 of the whole key
is stored, in the storage backend's ``api_keys`` record namespace, next to the principal it stands for.
A plain (unsalted, single-round) hash is enough here because the secret has 256 bits of entropy: there is
no dictionary to attack, unlike a password. The key itself is shown once, when it is created.

Records are read from storage on every request (no cache), so a revoked key stops working at once, and a
key created by ``memos auth create-key`` while a server runs on the same home is usable immediately.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING, Any

from memos.errors import InvalidInput, Unauthenticated
from memos.models import utcnow

if TYPE_CHECKING:
    from memos.sdk import MemOS
    from memos.storage import StorageBackend

#: Record namespace of API keys in the storage backend.
NAMESPACE = "api_keys"
_PREFIX = "mk"
_KEY_RE = re.compile(r"^mk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_PRINCIPAL_RE = re.compile(r"^[^\s\x00]{1,128}$")


def key_store(store: MemOS | StorageBackend) -> StorageBackend:
    """Where keys live: the storage backend behind a MemOS handle (or the backend itself)."""
    kernel = getattr(store, "_kernel", None)
    backend = getattr(kernel, "backend", None) if kernel is not None else store
    if backend is None or not hasattr(backend, "put_record"):
        raise InvalidInput("API keys need a memos home or storage backend (not a cluster client)",
                           field="home")
    return backend  # type: ignore[return-value]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_principal(principal: object) -> str:
    if not isinstance(principal, str) or not _PRINCIPAL_RE.match(principal):
        raise InvalidInput("principal must be 1-128 characters without whitespace", field="principal")
    return principal


def create_key(store: MemOS | StorageBackend, principal: str) -> str:
    """Create an API key for ``principal`` and return it; only its hash is stored."""
    check_principal(principal)
    key_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    key = f"{_PREFIX}_{key_id}_{secret}"
    key_store(store).put_record(NAMESPACE, key_id, {
        "principal": principal,
        "sha256": _digest(key),
        "created_at": utcnow().isoformat(),
    })
    return key


def key_id(key: str) -> str:
    """The id part of a key (safe to log and to pass to :func:`revoke_key`)."""
    match = _KEY_RE.match(key)
    if match is None:
        raise InvalidInput("not a memos API key (expected mk_<id>_<secret>)", field="key")
    return match.group(1)


def revoke_key(store: MemOS | StorageBackend, key_or_id: str) -> bool:
    """Delete a key by its id (or the whole key). True if it existed."""
    kid = key_id(key_or_id) if key_or_id.startswith(f"{_PREFIX}_") else key_or_id
    backend = key_store(store)
    if backend.get_record(NAMESPACE, kid) is None:
        return False
    backend.put_record(NAMESPACE, kid, None)
    return True


def resolve_key(store: MemOS | StorageBackend, key: str) -> str:
    """The principal an API key stands for; :class:`Unauthenticated` if the key is not valid."""
    match = _KEY_RE.match(key)
    if match is None:
        raise Unauthenticated("malformed API key")
    record: dict[str, Any] | None = key_store(store).get_record(NAMESPACE, match.group(1))
    # compare_digest: the comparison time must not tell an attacker how much of the hash matched.
    if record is None or not hmac.compare_digest(str(record.get("sha256", "")), _digest(key)):
        raise Unauthenticated("unknown or revoked API key")
    return str(record["principal"])


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None if absent or another scheme)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def authenticate(store: MemOS | StorageBackend, key: str | None, *,
                 insecure_local: bool = False) -> str | None:
    """The principal a request acts as: its key's, or the local administrator (None) on an insecure-local
    server when it sent no key. A key that is sent is always checked, even in insecure-local mode."""
    if key is None:
        if insecure_local:
            return None
        raise Unauthenticated()
    return resolve_key(store, key)


__all__ = ["NAMESPACE", "Unauthenticated", "authenticate", "bearer_token", "check_principal", "create_key",
           "key_id", "key_store", "resolve_key", "revoke_key"]
