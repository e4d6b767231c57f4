"""The L2MAC file store on a MemCube: each file is one plaintext memory, each write a new version.

A new path is ``cube.add(content, metadata={"path": ..., "l2mac_run": ...})``; writing it again is
``cube.update`` (version 2, 3 ...); deleting archives it. ``cube.history(id)`` replays a file.
"""

from __future__ import annotations

from typing import Any

from memos_l2mac.sandbox import safe_path


class CubeFiles:
    def __init__(self, cube: Any, run_id: str) -> None:
        self.cube = cube
        self.run_id = run_id

    def read(self, ids: dict[str, str], path: str) -> str:
        return str(self.cube.get(ids[safe_path(path)]).text)

    def contents(self, ids: dict[str, str]) -> dict[str, str]:
        return {path: str(self.cube.get(mid).text) for path, mid in ids.items()}

    def write(self, ids: dict[str, str], path: str, content: str) -> tuple[dict[str, str], int]:
        """Returns the new path→id map and the file's version."""
        path = safe_path(path)
        if path in ids:
            memory = self.cube.update(ids[path], content)
        else:
            memory = self.cube.add(content, metadata={"path": path, "l2mac_run": self.run_id}, tags=["l2mac-file"])
        return {**ids, path: memory.id}, int(memory.version)

    def delete(self, ids: dict[str, str], path: str) -> dict[str, str]:
        path = safe_path(path)
        self.cube.delete(ids[path])
        return {p: i for p, i in ids.items() if p != path}
