"""Cube access control: owner, readers, writers.

``read``: owner, readers, writers. ``write``: owner, writers. ``admin`` (grant, delete cube, policy):
owner only. ``*`` in a list admits every principal. The principal ``None`` is the local administrator
of an embedded home (the process that opened it) and passes every check.
"""

from __future__ import annotations

from typing import Literal

from memos.errors import AccessDenied, InvalidInput
from memos.models import Acl, MemCube

Access = Literal["read", "write", "admin"]
GRANTS = ("read", "write", "revoke")


def allowed(cube: MemCube, principal: str | None, access: Access) -> bool:
    if principal is None or principal == cube.owner:
        return True
    if access == "admin":
        return False
    writers = cube.acl.writers
    if principal in writers or "*" in writers:
        return True
    if access == "read":
        readers = cube.acl.readers
        return principal in readers or "*" in readers
    return False


def check(cube: MemCube, principal: str | None, access: Access) -> None:
    if not allowed(cube, principal, access):
        raise AccessDenied(principal, cube.name, access)


def granted(acl: Acl, principal: str, access: str) -> Acl:
    """The ACL after granting ``access`` (read | write | revoke) to ``principal``."""
    if access not in GRANTS:
        raise InvalidInput(f"access must be one of {', '.join(GRANTS)}, got {access!r}", field="access")
    if not isinstance(principal, str) or not principal.strip():
        raise InvalidInput("principal must be a non-empty string", field="principal")
    readers = [p for p in acl.readers if p != principal]
    writers = [p for p in acl.writers if p != principal]
    if access == "read":
        readers.append(principal)
    elif access == "write":
        writers.append(principal)
    return Acl(readers=readers, writers=writers)
