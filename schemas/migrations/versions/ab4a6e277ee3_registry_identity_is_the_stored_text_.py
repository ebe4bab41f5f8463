"""registry identity is the stored text; normalize config

Revision ID: ab4a6e277ee3
Revises: ea3941ba7cd4
Create Date: 2026-11-30 12:35:40.163566
"""

import sqlalchemy as sa
from alembic import op

from schemas.canonical import parse
from schemas.errors import InvalidSchema

revision = "ab4a6e277ee3"
down_revision = "ea3941ba7cd4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("registry_subjects", sa.Column("normalize", sa.Boolean(), nullable=True))
    restate_schemas()


def downgrade() -> None:
    # The restated texts and fingerprints stay: the old identity cannot be recovered.
    op.drop_column("registry_subjects", "normalize")


def restate_schemas() -> None:
    """Store each schema in Confluent's text form and key it on that text (issue 13).

    The old identity was coarser (docs and custom properties ignored), so old rows map to
    distinct new fingerprints.
    """
    table = sa.table(
        "registry_schemas",
        sa.column("id", sa.Integer),
        sa.column("fingerprint", sa.String),
        sa.column("schema", sa.Text),
        sa.column("references", sa.JSON),
        sa.column("dependencies", sa.JSON),
    )
    conn = op.get_bind()
    for row in conn.execute(sa.select(table)).all():
        keys = [[r["name"], r["subject"], r["version"]] for r in row.references or []]
        try:
            parsed = parse(row.schema, row.dependencies or [], keys)
        except InvalidSchema:
            continue  # unreadable before as well; leave it as it is
        conn.execute(
            sa.update(table)
            .where(table.c.id == row.id)
            .values(schema=parsed.text, fingerprint=parsed.fingerprint)
        )
