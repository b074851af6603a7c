"""Bring a job database to the schema this code knows, with alembic, from code.

No alembic.ini is needed at run time: `alembic_config` builds the configuration with
`script_location` pointing at `serv/store/migrations`, and hands the caller's connection
to `migrations/env.py` through `config.attributes`. The caller (the Store, on its thread)
owns the connection and its transaction, so a failed migration leaves the file untouched.

Refuses, rather than guesses, in two cases: a revision this code does not know (a newer
dynalauncher wrote the file; downgrading it could destroy data) and tables without any
revision (not a dynalauncher database, e.g. the old GUI's `sql_job` file).
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")

# Tables SQLite or alembic keep for themselves; any other table means "somebody's data".
_INTERNAL_TABLES = frozenset({"alembic_version", "sqlite_sequence"})


class SchemaRefused(Exception):
    """The database's schema cannot be brought to this code's head; the message says why."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config for our migrations, optionally carrying `connection` for env.py."""
    config = Config()
    # Config options go through configparser interpolation, where "%" is special.
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows, e.g. "0002"."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no alembic revisions found under {MIGRATIONS_DIR}")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision stamped in the database, or None for a database alembic never touched."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, target: str = "head") -> tuple[str | None, str]:
    """Migrate the database behind `connection` to `target`; return (from, to) revisions.

    Call it inside a transaction on `connection`; the caller commits. Raises SchemaRefused
    for a revision this code does not know and for a non-empty database without a revision.
    `target` other than "head" exists to build old-schema test files.
    """
    config = alembic_config(connection)
    scripts = ScriptDirectory.from_config(config)
    current = current_revision(connection)
    if current is None:
        foreign = sorted(set(inspect(connection).get_table_names()) - _INTERNAL_TABLES)
        if foreign:
            raise SchemaRefused(
                f"it holds tables {', '.join(foreign)} but no dynalauncher schema revision; "
                "it is not a dynalauncher job database"
            )
    else:
        try:
            known = scripts.get_revision(current) is not None
        except CommandError:
            known = False
        if not known:
            raise SchemaRefused(
                f"its schema revision {current!r} is unknown to this dynalauncher "
                f"(newest known: {scripts.get_current_head()!r}); it was probably written by "
                "a newer dynalauncher, so upgrade dynalauncher or use another database"
            )
    wanted = scripts.get_current_head() if target == "head" else target
    if wanted is None:
        raise RuntimeError(f"no alembic revisions found under {MIGRATIONS_DIR}")
    if current != wanted:
        command.upgrade(config, target)
        log.info("job database migrated from schema %s to %s", current or "(empty)", wanted)
    return current, wanted
