"""Manage claims: which backend objects are being adopted right now.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "manage_claims",
        sa.Column("backend_host", sa.String(255), primary_key=True),
        sa.Column("reference", sa.String(255), primary_key=True),
        sa.Column("resource_id", sa.String(36), nullable=False, index=True),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("manage_claims")
