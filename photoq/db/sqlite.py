"""The SQLite backend: photoq's default, one file in the data directory."""

from __future__ import annotations

from .catalogue import SQLiteCatalogue
from .gallery import SQLiteGallery
from .jobs import SQLiteJobs
from .maintenance import SQLiteMaintenance
from .sessions import SQLiteSessions
from .trash import SQLiteTrash


class SQLiteStore(SQLiteCatalogue, SQLiteGallery, SQLiteTrash, SQLiteJobs, SQLiteMaintenance, SQLiteSessions):
    """Every Store verb on one SQLite file: one writer thread (photoq's own, see writer.py), one reader connection."""
