"""Per-project quotas: limits, usage counters and the per-object charge ledger.

Volumes and snapshots that exist already are charged as if created now, so an
upgraded deployment starts with true usage and deleting them gives it back.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "quotas",
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("resource", sa.String(300), primary_key=True),
        sa.Column("hard_limit", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS),
    )
    op.create_table(
        "quota_usages",
        sa.Column("project_id", sa.String(255), primary_key=True),
        sa.Column("resource", sa.String(300), primary_key=True),
        sa.Column("in_use", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reserved", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", TS),
    )
    charges = op.create_table(
        "quota_charges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("object_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("reserved", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_quota_charges_object_id", "quota_charges", ["object_id"])
    _charge_existing(charges)


def _charge_existing(charges: sa.Table) -> None:
    meta = sa.MetaData()
    volumes = sa.Table(
        "volumes",
        meta,
        sa.Column("id", sa.String(36)),
        sa.Column("project_id", sa.String(255)),
        sa.Column("size", sa.Integer),
        sa.Column("volume_type_id", sa.String(36)),
    )
    snapshots = sa.Table(
        "snapshots",
        meta,
        sa.Column("id", sa.String(36)),
        sa.Column("project_id", sa.String(255)),
        sa.Column("volume_id", sa.String(36)),
        sa.Column("volume_size", sa.Integer),
    )
    types = sa.Table(
        "volume_types", meta, sa.Column("id", sa.String(36)), sa.Column("name", sa.String(255))
    )
    usages = sa.Table(
        "quota_usages",
        meta,
        sa.Column("project_id", sa.String(255)),
        sa.Column("resource", sa.String(300)),
        sa.Column("in_use", sa.Integer),
        sa.Column("reserved", sa.Integer),
    )
    now = sa.func.current_timestamp()
    cols = ["object_id", "project_id", "resource", "amount", "reserved", "created_at"]
    of_volume = volumes.join(types, types.c.id == volumes.c.volume_type_id)
    of_snapshot = snapshots.join(volumes, volumes.c.id == snapshots.c.volume_id).join(
        types, types.c.id == volumes.c.volume_type_id
    )
    for base, amount in (("volumes", sa.literal(1)), ("gigabytes", volumes.c.size)):
        for resource in (sa.literal(base), sa.literal(f"{base}_", sa.String) + types.c.name):
            select = sa.select(
                volumes.c.id, volumes.c.project_id, resource, amount, sa.false(), now
            ).select_from(of_volume)
            op.execute(charges.insert().from_select(cols, select))
    for base, amount in (("snapshots", sa.literal(1)), ("gigabytes", snapshots.c.volume_size)):
        for resource in (sa.literal(base), sa.literal(f"{base}_", sa.String) + types.c.name):
            select = sa.select(
                snapshots.c.id, snapshots.c.project_id, resource, amount, sa.false(), now
            ).select_from(of_snapshot)
            op.execute(charges.insert().from_select(cols, select))
    totals = sa.select(
        charges.c.project_id, charges.c.resource, sa.func.sum(charges.c.amount), sa.literal(0)
    ).group_by(charges.c.project_id, charges.c.resource)
    op.execute(
        usages.insert().from_select(["project_id", "resource", "in_use", "reserved"], totals)
    )


def downgrade() -> None:
    op.drop_index("ix_quota_charges_object_id", table_name="quota_charges")
    op.drop_table("quota_charges")
    op.drop_table("quota_usages")
    op.drop_table("quotas")
