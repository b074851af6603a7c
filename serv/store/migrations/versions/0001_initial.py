"""The first schema: the `jobs` table and `meta` with this database's `daemon_id`.

Revision ID: 0001
Revises: (none)

The `daemon_id` is made here, once, when the database is created: it tags the processes
this store's daemon launches (in their environment), so after a restart the daemon can tell
its own orphans from another daemon's. It must never change for the life of the file.
Column meanings and storage rules: serv/store/models.py.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("solver", sa.Text(), nullable=False),
        sa.Column("family", sa.String(16), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("workdir", sa.Text(), nullable=False),
        sa.Column("submitted_at", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("ncpu", sa.Integer(), nullable=False),
        sa.Column("memory", sa.Text(), nullable=True),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("nice", sa.Integer(), nullable=False),
        sa.Column("restart", sa.Text(), nullable=True),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("backend_id", sa.Text(), nullable=True),
        sa.Column("licenses", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("pid_create_time", sa.Float(), nullable=True),
        sa.Column("launcher_pid", sa.Integer(), nullable=True),
        sa.Column("launcher_create_time", sa.Float(), nullable=True),
        sa.Column("allocated_cores", sa.Text(), nullable=True),
        sa.Column("started_at", sa.String(32), nullable=True),
        sa.Column("ended_at", sa.String(32), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("sim_time", sa.Float(), nullable=True),
        sa.Column("end_time", sa.Float(), nullable=True),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("added_mass", sa.Float(), nullable=True),
        sa.Column("pct_mass", sa.Float(), nullable=True),
        sa.Column("termination", sa.String(16), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        # AUTOINCREMENT: job ids are never reused, even after the newest job is deleted.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    meta = op.create_table(
        "meta",
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.bulk_insert(meta, [{"key": "daemon_id", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_index("ix_jobs_status", table_name="jobs")
    op.drop_table("jobs")
