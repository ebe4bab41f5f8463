"""audit head remembers the Kafka offset after its last message

Revision ID: 7c1d2e3f4a5b
Revises: 4e9306f47f96
Create Date: 2026-11-30 13:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "7c1d2e3f4a5b"
down_revision = "4e9306f47f96"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("kafka_next", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("kafka_next")
