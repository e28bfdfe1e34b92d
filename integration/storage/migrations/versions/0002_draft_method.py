"""drafts.draft_method: a model candidate, or the extractive fallback.

Revision ID: 0002_draft_method
Revises: 0001_initial
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_draft_method"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.add_column(
            sa.Column("draft_method", sa.String(32), nullable=False, server_default="model")
        )


def downgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("draft_method")
