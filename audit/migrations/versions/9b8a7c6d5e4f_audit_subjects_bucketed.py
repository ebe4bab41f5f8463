"""audit subject rows keyed (bucket, subject, idx), WITHOUT ROWID on SQLite

Random HMAC subjects leading the key scattered every insert over the whole table; a growing
bucket first keeps a batch's inserts local (see ``audit.models.SUBJECT_BUCKET_ROWS``). The
rows keep their subject and idx; existing rows are cut into buckets of SUBJECT_BUCKET_ROWS
rows in index order, and the head's bucket counter starts after them.

Revision ID: 9b8a7c6d5e4f
Revises: 7c1d2e3f4a5b
Create Date: 2026-12-01 06:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "9b8a7c6d5e4f"
down_revision = "7c1d2e3f4a5b"
branch_labels = None
depends_on = None

# Existing rows go 8192 to a bucket: audit.models.SUBJECT_BUCKET_ROWS when this was written.


def _rename_pkey(old: str, new: str) -> None:
    # PostgreSQL names the key's constraint (and index) after the table it was created with.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE audit_subjects RENAME CONSTRAINT {old} TO {new}")


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(
            sa.Column("subject_bucket", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("subject_rows", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "audit_subjects_new",
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "subject", "idx"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO audit_subjects_new (bucket, subject, idx) "
        "SELECT (ROW_NUMBER() OVER (ORDER BY idx, subject) - 1) / 8192, subject, idx "
        "FROM audit_subjects"
    )
    _replace_with("audit_subjects_new")
    op.execute(
        "UPDATE audit_head SET subject_bucket = "
        "(SELECT COALESCE(MAX(bucket) + 1, 0) FROM audit_subjects), subject_rows = 0"
    )


def downgrade() -> None:
    op.create_table(
        "audit_subjects_old",
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("subject", "idx"),
    )
    op.execute(
        "INSERT INTO audit_subjects_old (subject, idx) SELECT subject, idx FROM audit_subjects"
    )
    _replace_with("audit_subjects_old")
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("subject_rows")
        batch.drop_column("subject_bucket")


def _replace_with(rebuilt: str) -> None:
    """``audit_subjects`` becomes the rebuilt table (its primary key and idx index named as
    the original's)."""
    op.drop_index("ix_audit_subjects_idx", table_name="audit_subjects")
    op.drop_table("audit_subjects")
    op.rename_table(rebuilt, "audit_subjects")
    _rename_pkey(f"{rebuilt}_pkey", "audit_subjects_pkey")
    op.create_index("ix_audit_subjects_idx", "audit_subjects", ["idx"], unique=False)
