"""publish idempotency: the claim's request id and the answer staged before commit

Revision ID: 5a6b7c8d9e0f
Revises: 198f54001175
Create Date: 2026-11-30 13:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "5a6b7c8d9e0f"
down_revision = "198f54001175"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("publish_idempotency") as batch:
        batch.add_column(sa.Column("request_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("staged", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("publish_idempotency") as batch:
        batch.drop_column("staged")
        batch.drop_column("request_id")
