"""An assistant that remembers across chat sessions: each session's turns are stored in the user's cube,
and the next session starts by recalling what is relevant to the new message.

    python examples/chat_sessions.py
"""

from __future__ import annotations

import os
import tempfile

import memos

SESSIONS = [
    ("2024-03-01", ["I just started learning the cello!", "My teacher is called Ms. Okafor.",
                    "I'm allergic to peanuts, so be careful with recipes."]),
    ("2024-04-12", ["We had our first recital rehearsal today.", "Can you suggest a dessert for the party?"]),
    ("2024-06-30", ["The recital went great, Ms. Okafor was proud."]),
]


def remember(cube: memos.Cube, date: str, turns: list[str]) -> None:
    cube.add_many([{"text": f"user: {t}", "event_time": date, "metadata": {"session": date},
                    "context": "\n".join(turns[max(0, i - 1):i] + turns[i + 1:i + 2])}
                   for i, t in enumerate(turns)])


def recall(cube: memos.Cube, message: str, k: int = 3) -> list[str]:
    return [h.memory.text for h in cube.search(message, top_k=k)]


def main(home: str) -> None:
    with memos.MemOS.open(home) as mos:
        if any(c.name == "user-42" for c in mos.list_cubes()):
            mos.delete_cube("user-42")
        cube = mos.create_cube("user-42", owner="user-42")
        for date, turns in SESSIONS:
            new_message = turns[-1]
            context = recall(cube, new_message) if cube.head else []
            print(f"[{date}] user says: {new_message!r}")
            for line in context:
                print(f"    recalled: {line}")
            remember(cube, date, turns)
        print("what instrument? ->", recall(cube, "what instrument does the user play", k=1)[0])
        print("food allergies?  ->", recall(cube, "food allergy", k=1)[0])
        print("before April:    ->", [h.memory.text for h in cube.search("teacher", top_k=2,
                                                                         time_range=(None, "2024-04-01"))])


if __name__ == "__main__":
    home = os.environ.get("MEMOS_HOME")
    if home:
        main(home)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
