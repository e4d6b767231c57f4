"""ChatDB plugin (plugins/chatdb): chain-of-memory over the fruit-shop fixture, driven by ScriptedChat."""

from __future__ import annotations

import json

import pytest

from memos.cli import main
from memos.errors import InvalidInput
from memos.llm import ScriptedChat

chatdb = pytest.importorskip("memos_chatdb", reason="pip install -e plugins/chatdb")
from memos_chatdb import ChainOfMemory, ChatDatabase, UnsafeSQL, database_path, load_fruit_shop, parse_steps


@pytest.fixture
def shop(mos):
    cube = mos.create_cube("shop", owner="shop")
    db = ChatDatabase.for_cube(mos.home, "shop")
    load_fruit_shop(db)
    yield cube, db
    db.close()


def rows(db, sql):
    return db.execute(sql).rows


def test_database_lives_under_the_home(mos, shop):
    _, db = shop
    assert db.path == database_path(mos.home, "shop") and str(db.path).endswith("chatdb/shop.sqlite")
    assert db.tables == ["customer", "fruit", "purchase"]


def test_parse_steps_formats():
    assert parse_steps("Step 1: SELECT 1;\nStep 2: UPDATE fruit\n  SET stock = 1;") == \
        ["SELECT 1", "UPDATE fruit\n  SET stock = 1"]
    assert parse_steps("1. SELECT 1\n2) SELECT 2") == ["SELECT 1", "SELECT 2"]
    assert parse_steps("```sql\nSELECT 1;\n```") == ["SELECT 1"]


def test_purchase_inserts_and_updates_stock(shop):
    cube, db = shop
    chat = ScriptedChat([
        ("Step 1: INSERT INTO purchase (customer_id, fruit_id, quantity, day) VALUES (2, 3, 5, '2024-06-01');\n"
         "Step 2: UPDATE fruit SET stock = stock - 5 WHERE id = 3;")])
    out = ChainOfMemory(chat, db, cube).ask("Ben buys 5 cherries on 2024-06-01")
    assert out.status == "ok", out.error
    assert [s["status"] for s in out.steps] == ["ok", "ok"]
    assert rows(db, "SELECT stock FROM fruit WHERE id = 3") == [[15]]
    assert rows(db, "SELECT customer_id, quantity FROM purchase WHERE day = '2024-06-01'") == [[2, 5]]
    assert "CREATE TABLE fruit" in chat.requests[0]["messages"][0]["content"]  # the schema is in the prompt
    # each step is a memory in the cube, with step number, sql and status
    recorded = sorted((m.metadata["step"], m.metadata["status"], m.metadata["sql"]) for m in cube.list())
    assert recorded == [(1, "ok", out.steps[0]["sql"]), (2, "ok", out.steps[1]["sql"])]
    assert all(m.metadata["chatdb_request"] == out.request_id for m in cube.list())


def test_return_fills_placeholder_from_previous_result(shop):
    cube, db = shop
    chat = ScriptedChat([
        ("Step 1: SELECT id, quantity FROM purchase WHERE customer_id = 1 AND fruit_id = 1 AND returned = 0;\n"
         "Step 2: UPDATE purchase SET returned = 1 WHERE id = <purchase_id>;\n"
         "Step 3: UPDATE fruit SET stock = stock + 6 WHERE id = 1;"),
        lambda messages: '{"purchase_id": 1}'])
    out = ChainOfMemory(chat, db, cube).ask("Ana returns the apples she bought on 2024-05-01")
    assert out.status == "ok", out.error
    assert out.steps[0]["result"]["rows"] == [[1, 6]]
    assert out.steps[1]["sql"] == "UPDATE purchase SET returned = 1 WHERE id = 1"
    fill = chat.requests[1]["messages"][-1]["content"]
    assert "<purchase_id>" in fill and "rows=[[1, 6]]" in fill  # the step and the previous results
    assert rows(db, "SELECT returned FROM purchase WHERE id = 1") == [[1]]
    assert rows(db, "SELECT stock FROM fruit WHERE id = 1") == [[106]]


def test_placeholder_values_are_literals_not_sql(shop):
    cube, db = shop
    chat = ScriptedChat(["Step 1: SELECT id FROM customer WHERE name = <who>",
                         '{"who": "x\' OR 1=1; DROP TABLE fruit; --"}'])
    out = ChainOfMemory(chat, db, cube).ask("find a customer")
    assert out.status == "ok" and out.steps[0]["result"]["rows"] == []
    assert "fruit" in db.tables


def test_failing_step_is_rolled_back_reported_and_stops_the_chain(shop):
    cube, db = shop
    before_purchases = rows(db, "SELECT count(*) FROM purchase")
    chat = ScriptedChat([
        ("Step 1: UPDATE fruit SET price = 0.6 WHERE id = 1;\n"
         "Step 2: UPDATE fruit SET stock = stock - 1000 WHERE id = 2;\n"  # CHECK (stock >= 0) fails
         "Step 3: INSERT INTO purchase (customer_id, fruit_id, quantity, day) VALUES (1, 2, 1000, '2024-06-02');")])
    out = ChainOfMemory(chat, db, cube).ask("Ana buys 1000 bananas, and raise apple prices")
    assert out.status == "error" and "CHECK constraint" in out.error
    assert [s["status"] for s in out.steps] == ["ok", "error", "skipped"]
    assert rows(db, "SELECT price FROM fruit WHERE id = 1") == [[0.6]]  # step 1 committed
    assert rows(db, "SELECT stock FROM fruit WHERE id = 2") == [[150]]  # step 2 rolled back
    assert rows(db, "SELECT count(*) FROM purchase") == before_purchases  # step 3 never ran
    assert sorted(m.metadata["status"] for m in cube.list()) == ["error", "ok"]


def test_failing_step_leaves_file_bytes_as_after_the_previous_step(shop):
    cube, db = shop
    db.execute("UPDATE fruit SET price = 0.6 WHERE id = 1")
    before = db.path.read_bytes()
    chat = ScriptedChat(["Step 1: UPDATE fruit SET stock = -1 WHERE id = 2;\nStep 2: DELETE FROM fruit;"])
    out = ChainOfMemory(chat, db, cube).ask("break the stock")
    assert [s["status"] for s in out.steps] == ["error", "skipped"]
    assert db.path.read_bytes() == before


INJECTIONS = [
    "SELECT 1; DROP TABLE fruit",
    "ATTACH DATABASE '/tmp/x' AS x",
    "PRAGMA writable_schema = ON",
    "PRAGMA table_info(fruit)",
    "SELECT name, sql FROM sqlite_master",
    "SELECT * FROM sqlite_schema",
    "SELECT * FROM other.fruit",
    "SELECT * FROM fruit WHERE id IN (SELECT rowid FROM sqlite_master)",
    "WITH t AS (SELECT * FROM sqlite_master) SELECT * FROM t",
    "SELECT load_extension('/tmp/evil.so')",
    "DROP TABLE fruit",
    "CREATE TABLE evil (x)",
    "DELETE FROM fruit; DELETE FROM purchase",
    "VACUUM INTO '/tmp/copy.sqlite'",
]


@pytest.mark.parametrize("sql", INJECTIONS)
def test_injection_refused_directly_and_db_unchanged(shop, sql):
    _, db = shop
    before = db.path.read_bytes()
    with pytest.raises(UnsafeSQL) as err:
        db.execute(sql)
    assert isinstance(err.value, InvalidInput) and err.value.sql == sql
    assert db.path.read_bytes() == before


@pytest.mark.parametrize("sql", INJECTIONS)
def test_injection_in_a_chain_refuses_the_whole_chain(shop, sql):
    cube, db = shop
    before = db.path.read_bytes()
    chat = ScriptedChat([f"Step 1: UPDATE fruit SET stock = 0 WHERE id = 1;\nStep 2: {sql};"])
    with pytest.raises(UnsafeSQL) as err:
        ChainOfMemory(chat, db, cube).ask("do something nasty")
    assert err.value.step == 2
    assert db.path.read_bytes() == before  # checked before anything ran: step 1 did not run either
    assert [m.metadata["status"] for m in cube.list()] == ["refused"]


def test_authorizer_is_a_second_wall(shop):
    _, db = shop
    before = db.path.read_bytes()
    for sql in ("SELECT * FROM sqlite_master", "ATTACH DATABASE '/tmp/x' AS x", "PRAGMA table_info(fruit)",
                "SELECT load_extension('x')", "CREATE TABLE evil (x)", "DROP TABLE fruit"):
        with pytest.raises(chatdb.SQLNotAllowed):
            db._run(sql, None)  # past the static check: SQLite itself refuses
    assert db.path.read_bytes() == before


def test_cli_ask_prints_json(home, monkeypatch, capsys):
    from memos_chatdb import plugin

    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: ScriptedChat(
        ["Step 1: SELECT name, stock FROM fruit WHERE stock < 25;"]))
    assert main(["--home", str(home), "chatdb", "init", "shop", "--json"]) == 0
    capsys.readouterr()
    assert main(["--home", str(home), "chatdb", "ask", "shop", "which fruit is running low?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "ok" and out["result"]["rows"] == [["cherry", 20]]
    monkeypatch.setattr(plugin, "chat_backend", lambda *a, **k: ScriptedChat(["Step 1: DROP TABLE fruit"]))
    assert main(["--home", str(home), "chatdb", "ask", "shop", "drop it", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["type"] == "UnsafeSQL"
