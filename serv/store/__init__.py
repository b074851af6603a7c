"""The job database: SQLAlchemy 2.0 over one SQLite file in WAL mode, with alembic migrations.

Public surface: `Store` (open, create, commit, get, list, live, events, ping, close) and the
`StoredEvent` record. Everything else here (ORM models, the alembic environment) is private:
only this package imports sqlalchemy or alembic, and ORM rows never leave it.
"""

from serv.store.repo import Store, StoredEvent

__all__ = ["Store", "StoredEvent"]
