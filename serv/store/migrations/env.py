"""Alembic environment of the job database.

Run only through `serv.store.migrate`, never from the alembic command line: the Store owns
the connection (its pragmas, its file lock, its one thread) and passes it in
`config.attributes["connection"]`, already inside a transaction, so a migration either
applies completely or not at all (SQLite has transactional DDL). Offline (`--sql`) mode is
not supported: nobody runs SQL scripts against a user's jobs.db by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from serv.store.models import Base

config = context.config
connection = config.attributes.get("connection")

if context.is_offline_mode() or not isinstance(connection, Connection):
    raise RuntimeError(
        "serv/store/migrations runs only through serv.store.migrate.upgrade(), "
        "which passes an open connection in config.attributes['connection']"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters most things only by copying the table; batch mode does that for us.
    render_as_batch=True,
    transactional_ddl=True,
)

with context.begin_transaction():
    context.run_migrations()
