import pytest

from kernel_backends.sqlite import SqliteBackend
from memos.testing.conformance import BackendConformance


class TestSqliteConformance(BackendConformance):
    @pytest.fixture
    def backend(self, tmp_path):
        b = SqliteBackend(tmp_path / "memos.db")
        yield b
        b.close()


def test_reopen_keeps_everything(tmp_path):
    from memos.models import MemCube
    from memos.testing.conformance import _commit, _mem

    b = SqliteBackend(tmp_path / "m.db")
    b.put_cube(MemCube(name="c", owner="o"), create=True)
    _commit(b, "c", 0, [_mem("c", "a", 1, 1, "one")])
    b.close()
    b2 = SqliteBackend(tmp_path / "m.db")
    assert b2.get_cube("c").head == 1 and b2.get_memories("c", ["a"])[0].text == "one"
    b2.close()
