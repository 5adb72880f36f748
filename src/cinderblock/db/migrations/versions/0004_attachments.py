"""Volume attachments.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "volume_attachments",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False, index=True
        ),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("instance_uuid", sa.String(36)),
        sa.Column("attached_host", sa.String(255)),
        sa.Column("mountpoint", sa.String(255)),
        sa.Column("attach_status", sa.String(64), nullable=False),
        sa.Column("attach_mode", sa.String(36)),
        sa.Column("connector", sa.Text),
        sa.Column("connection_info", sa.Text),
        sa.Column("attach_time", TS),
        sa.Column("detach_time", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
    )


def downgrade() -> None:
    op.drop_table("volume_attachments")
