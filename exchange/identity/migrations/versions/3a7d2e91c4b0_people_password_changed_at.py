"""people: password_changed_at (tokens issued before a password change stop working)

Revision ID: 3a7d2e91c4b0
Revises: 125f44dbe633
Create Date: 2026-11-30 19:35:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "3a7d2e91c4b0"
down_revision = "125f44dbe633"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("people", sa.Column("password_changed_at", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.drop_column("password_changed_at")
