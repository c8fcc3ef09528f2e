"""Documents attached to documents (an e-mail's attachments) and what OCR read of each document.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06 06:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot add a foreign key to an existing table (the batch copies it); PostgreSQL
    # runs the same statements directly.
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("ocr_pages", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("ocr_engine", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch.create_index(batch.f("ix_documents_parent_id"), ["parent_id"], unique=False)
        batch.create_foreign_key("documents_parent_id_fkey", "documents", ["parent_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_constraint("documents_parent_id_fkey", type_="foreignkey")
        batch.drop_index(batch.f("ix_documents_parent_id"))
        batch.drop_column("parent_id")
        batch.drop_column("ocr_engine")
        batch.drop_column("ocr_pages")
