"""A small fruit-shop database (our own fixture, in the spirit of the ChatDB paper's example)."""

from __future__ import annotations

from memos_chatdb.database import ChatDatabase

FRUIT_SHOP_SCHEMA = [
    ("CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, price REAL NOT NULL "
     "CHECK (price >= 0), stock INTEGER NOT NULL CHECK (stock >= 0))"),
    "CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT)",
    ("CREATE TABLE purchase (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customer(id), "
     "fruit_id INTEGER NOT NULL REFERENCES fruit(id), quantity INTEGER NOT NULL CHECK (quantity > 0), "
     "day TEXT NOT NULL, returned INTEGER NOT NULL DEFAULT 0)"),
]

FRUIT_SHOP_RECORDS = [
    ("INSERT INTO fruit (id, name, price, stock) VALUES (1, 'apple', 0.5, 100), (2, 'banana', 0.25, 150), "
     "(3, 'cherry', 4.0, 20), (4, 'mango', 1.75, 30)"),
    "INSERT INTO customer (id, name, phone) VALUES (1, 'Ana Silva', '555-0101'), (2, 'Ben Okafor', '555-0102')",
    ("INSERT INTO purchase (id, customer_id, fruit_id, quantity, day) VALUES (1, 1, 1, 6, '2024-05-01'), "
     "(2, 2, 4, 2, '2024-05-02')"),
]


def load_fruit_shop(db: ChatDatabase) -> list[str]:
    """Create the fruit-shop tables (schema-setup path) and insert the records (allow-listed path)."""
    tables = db.setup_schema(FRUIT_SHOP_SCHEMA)
    for sql in FRUIT_SHOP_RECORDS:
        db.execute(sql)
    return tables


FIXTURES = {"fruit-shop": load_fruit_shop}
