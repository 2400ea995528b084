"""The database: the storage interface (Store) and its SQLite backend.

    store.py        the verbs and what each guarantees (an abstract base class)
    migrations.py   schema.sql and the numbered migrations
    writer.py       the SQLite write connection on a thread of its own (execute_write_fn)
    connection.py   the SQLite backend's connections, opened and migrated
    catalogue.py    albums, photos, outputs, history, settings
    jobs.py         claims, leases and results; the queue's reads and admin verbs
    maintenance.py  doctor and reprocess
    sessions.py     web sessions and one-time login codes
    sqlite.py       the SQLite backend, all of the above
"""

from .migrations import MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_BASE, schema_sql
from .sqlite import SQLiteStore
from .store import Store

Database = SQLiteStore  # the name the callers have always used

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "SCHEMA_VERSION_BASE", "Database", "SQLiteStore", "Store", "schema_sql"]
