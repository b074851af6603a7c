"""Add `queue_seq`: a queued job's place in the persistent queue (issue #5).

Revision ID: 0003
Revises: 0002

The queue is ordered by priority, then `queue_seq`; moveJob re-hands out sequence numbers.
Rows written before this revision take their id as their sequence, which is the order
they were submitted in.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("queue_seq", sa.Float(), nullable=True))
    op.execute("UPDATE jobs SET queue_seq = id WHERE queue_seq IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue_seq")
