"""Initial schema: volume types, volumes, snapshots, metadata, messages, services.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _kv_table(name: str, parent: str, parent_col: str, value_nullable: bool = False) -> None:
    op.create_table(
        name,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            parent_col,
            sa.String(36),
            sa.ForeignKey(f"{parent}.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=value_nullable),
        sa.UniqueConstraint(parent_col, "key"),
    )


def upgrade() -> None:
    op.create_table(
        "volume_types",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.String(255)),
        sa.Column("is_public", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
    )
    _kv_table("volume_type_extra_specs", "volume_types", "volume_type_id", value_nullable=True)
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("host", sa.String(255)),
        sa.Column("cluster_name", sa.String(255)),
        sa.Column("service_uuid", sa.String(36)),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(255)),
        sa.Column("display_description", sa.String(255)),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("previous_status", sa.String(64)),
        sa.Column("attach_status", sa.String(64), nullable=False),
        sa.Column("migration_status", sa.String(64)),
        sa.Column("bootable", sa.Boolean, nullable=False),
        sa.Column("multiattach", sa.Boolean, nullable=False),
        sa.Column(
            "volume_type_id", sa.String(36), sa.ForeignKey("volume_types.id"), nullable=False
        ),
        sa.Column("snapshot_id", sa.String(36)),
        sa.Column("source_volid", sa.String(36)),
        sa.Column("group_id", sa.String(36)),
        sa.Column("provider_location", sa.String(255)),
        sa.Column("provider_id", sa.String(255)),
        sa.Column("provider_auth", sa.String(255)),
        sa.Column("replication_status", sa.String(64)),
        sa.Column("encryption_key_id", sa.String(36)),
        sa.Column("consumes_quota", sa.Boolean, nullable=False),
        sa.Column("shared_targets", sa.Boolean),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
    )
    op.create_index("ix_volumes_project_created", "volumes", ["project_id", "created_at"])
    op.create_index("ix_volumes_host_status", "volumes", ["host", "status"])
    _kv_table("volume_metadata", "volumes", "volume_id")
    _kv_table("volume_admin_metadata", "volumes", "volume_id")
    op.create_table(
        "snapshots",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "volume_id", sa.String(36), sa.ForeignKey("volumes.id"), nullable=False, index=True
        ),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255)),
        sa.Column("status", sa.String(64), nullable=False),
        sa.Column("progress", sa.String(255)),
        sa.Column("volume_size", sa.Integer, nullable=False),
        sa.Column("display_name", sa.String(255)),
        sa.Column("display_description", sa.String(255)),
        sa.Column("provider_location", sa.String(255)),
        sa.Column("provider_id", sa.String(255)),
        sa.Column("group_snapshot_id", sa.String(36)),
        sa.Column("consumes_quota", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
    )
    op.create_index("ix_snapshots_project_created", "snapshots", ["project_id", "created_at"])
    _kv_table("snapshot_metadata", "snapshots", "snapshot_id")
    op.create_table(
        "messages",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("request_id", sa.String(255)),
        sa.Column("resource_type", sa.String(255)),
        sa.Column("resource_uuid", sa.String(36)),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("message_level", sa.String(255), nullable=False),
        sa.Column("user_message", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS),
    )
    op.create_index("ix_messages_project_created", "messages", ["project_id", "created_at"])
    op.create_table(
        "services",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("binary", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.String(255)),
        sa.Column("report_count", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
        sa.UniqueConstraint("host", "binary"),
    )


def downgrade() -> None:
    for table in (
        "services",
        "messages",
        "snapshot_metadata",
        "snapshots",
        "volume_admin_metadata",
        "volume_metadata",
        "volumes",
        "volume_type_extra_specs",
        "volume_types",
    ):
        op.drop_table(table)
