"""ChatDB for memos (Hu et al. 2023): a per-cube SQLite database as symbolic memory, driven by chains of SQL.

``ChainOfMemory(chat, ChatDatabase.for_cube(mos.home, "shop"), cube).ask("...")``; see :mod:`.chain`.
"""

from memos_chatdb.chain import ChainOfMemory, ChainResult, parse_steps
from memos_chatdb.database import ChatDatabase, StepResult, database_path
from memos_chatdb.errors import SQLNotAllowed, UnsafeSQL
from memos_chatdb.fixtures import FRUIT_SHOP_RECORDS, FRUIT_SHOP_SCHEMA, load_fruit_shop

__all__ = ["FRUIT_SHOP_RECORDS", "FRUIT_SHOP_SCHEMA", "ChainOfMemory", "ChainResult", "ChatDatabase",
           "SQLNotAllowed", "StepResult", "UnsafeSQL", "database_path", "load_fruit_shop", "parse_steps"]
