"""Durability and concurrency: SIGKILL loses no acknowledged write; one process per home; threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from memos import MemOS
from memos.errors import HomeLocked

WRITER = textwrap.dedent("""
    import sys
    from memos import MemOS
    mos = MemOS.open(sys.argv[1])
    cube = mos.create_cube("log")
    print("ready", flush=True)
    i = 0
    while True:
        m = cube.add(f"event number {i} happened with payload token{i}")
        print(m.id, i, flush=True)   # printed only after add() returned: acknowledged
        i += 1
""")


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_write(home, tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(home)], stdout=subprocess.PIPE, text=True)
    acked: list[tuple[str, int]] = []
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.time() + 120
        while len(acked) < 40 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            mid, i = line.split()
            acked.append((mid, int(i)))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(acked) >= 40
    with MemOS.open(home) as mos:
        cube = mos.cube("log")
        for mid, i in acked:
            assert cube.get(mid).text.endswith(f"token{i}")
        # the index is rebuilt from the log and agrees with it
        mid, i = acked[-1]
        assert cube.search(f"token{i}", top_k=3)[0].memory.id == mid
        stored = cube.list(limit=10_000)
        assert cube.stats()["live"] == len(stored) >= len(acked)
        assert [e.commit for e in cube.log()] == list(range(1, cube.head + 1))


def test_second_process_gets_home_locked(home):
    with MemOS.open(home):
        code = ("import sys\nfrom memos import MemOS\nfrom memos.errors import HomeLocked\n"
                "try:\n    MemOS.open(sys.argv[1])\nexcept HomeLocked as e:\n    print('LOCKED', e.home)\n")
        out = subprocess.run([sys.executable, "-c", code, str(home)], capture_output=True, text=True, timeout=120)
        assert out.stdout.startswith("LOCKED"), out.stderr
        with pytest.raises(HomeLocked):
            MemOS.open(home)
    # released on close: opening again works
    MemOS.open(home).close()


def test_eight_threads_gap_free_history(mos):
    cube = mos.create_cube("busy")
    errors: list[BaseException] = []
    written: list[str] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        try:
            for i in range(12):
                m = cube.add(f"thread {t} message {i}")
                if i % 4 == 0:
                    cube.update(m.id, f"thread {t} message {i} edited")
                with lock:
                    written.append(m.id)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    log = cube.log()
    assert [e.commit for e in log] == list(range(1, 8 * 12 + 8 * 3 + 1))
    assert cube.head == len(log)
    versions = {m.id: m.version for m in cube.list(limit=1000)}
    assert set(versions) == set(written)
    assert sum(v - 1 for v in versions.values()) == 8 * 3
    for mid in written:
        commits = [v.commit for v in cube.history(mid)]
        assert commits == sorted(commits)
    assert cube.stats()["live"] == len(written)
