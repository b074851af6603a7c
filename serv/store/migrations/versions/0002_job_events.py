"""Add `job_events` (one row per status transition) and the `extra`, `stop_requested_by` columns.

Revision ID: 0002
Revises: 0001

`job_events` keeps the history a single `jobs` row overwrites, for post-mortems ("when did
job 42 start stopping, and why"). `stop_requested_by` records who asked for a stop, so an
exit while stopping ends `stopped`, not `failed`. `extra` holds per-family JSON that has no
column of its own. Rows written under 0001 get `extra = '{}'` and no stop requester.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # SQLite's ALTER TABLE ADD COLUMN needs no table copy for a nullable column or one
    # with a constant default, so existing rows are kept as they are.
    op.add_column("jobs", sa.Column("stop_requested_by", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("extra", sa.Text(), nullable=False, server_default="{}"))
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "job_id",
            sa.Integer(),
            sa.ForeignKey("jobs.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_events_job_id", table_name="job_events")
    op.drop_table("job_events")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("extra")
        batch.drop_column("stop_requested_by")
