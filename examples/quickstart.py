"""A tour of the memos SDK on the embedded default (SQLite + FAISS under a home directory).

    python examples/quickstart.py            # uses $MEMOS_HOME, or a temporary home
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import memos


def main(home: str) -> None:
    with memos.MemOS.open(home) as mos:
        name = "alice"
        if any(c.name == name for c in mos.list_cubes()):
            mos.delete_cube(name)
        cube = mos.create_cube(name, owner="alice", description="what we know about Alice")

        m = cube.add("Alice moved to Lisbon in 2023", metadata={"session": 3}, event_time="2023-05-01")
        cube.add_many([
            {"text": "Alice adopted a border collie called Pixel", "metadata": {"session": 3}},
            {"text": "Alice is training for the Lisbon half marathon", "metadata": {"session": 4},
             "event_time": "2024-02-10"},
            "Alice's favourite food is grilled sardines",
        ])
        print(f"cube {cube.name!r} at commit {cube.head}")

        for hit in cube.search("where does alice live?", top_k=3):
            print(f"  {hit.score:.3f}  {hit.memory.text}")
        print("session 4 only:", [h.memory.text for h in cube.search("alice", filters={"session": 4})])
        print("2024 onwards:  ", [h.memory.text for h in cube.search("alice", time_range=("2024-01-01", None))])

        before_move = cube.head
        cube.update(m.id, "Alice moved to Porto in 2025")
        print("history:", [(v.version, v.text) for v in cube.history(m.id)])
        print("as of commit", before_move, "->", cube.at(before_move).get(m.id).text)
        cube.rollback(m.id, version=1)
        print("after rollback:", cube.get(m.id).text, f"(version {cube.get(m.id).version})")

        bob = mos.as_principal("bob")
        try:
            bob.cube(name)
        except memos.errors.AccessDenied as exc:
            print("bob before grant:", exc)
        mos.grant(name, principal="bob", access="read")
        print("bob after grant:", bob.cube(name).search("pet", top_k=1)[0].memory.text)

        async def async_tour() -> None:
            hits = await cube.asearch("marathon", top_k=1)
            print("async search:", hits[0].memory.text)

        asyncio.run(async_tour())

        bundle = os.path.join(home, "alice.memos")
        info = mos.export_cube(name, bundle)
        print(f"exported {info['memories']} memories / {info['versions']} versions to {bundle}")


if __name__ == "__main__":
    home = os.environ.get("MEMOS_HOME")
    if home:
        main(home)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
