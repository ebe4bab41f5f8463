"""consent managers; artefacts carry a keyed subject hash, no salt

Revision ID: 76a300fc8f37
Revises: bd2c93859e32
Create Date: 2026-11-30 12:40:32.718827

Artefacts of format 1 stored before this revision are re-signed with the keyed subject hash
by ``Consents.upgrade_artefacts`` when the gateway starts (it needs the master key, which a
migration does not have); the salt column they used is dropped here.
"""

import sqlalchemy as sa
from alembic import op

revision = "76a300fc8f37"
down_revision = "bd2c93859e32"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_managers",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("manager", sa.String(length=64), nullable=False),
        sa.Column("designated_by", sa.String(length=64), nullable=False),
        sa.Column("designated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["manager"], ["departments.id"]),
        sa.ForeignKeyConstraint(["owner"], ["departments.id"]),
        sa.PrimaryKeyConstraint("owner", "manager"),
    )
    with op.batch_alter_table("consents") as batch:
        batch.drop_column("subject_salt")


def downgrade() -> None:
    with op.batch_alter_table("consents") as batch:
        batch.add_column(
            sa.Column("subject_salt", sa.String(length=32), nullable=False, server_default="")
        )
    op.drop_table("consent_managers")
