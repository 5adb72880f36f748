"""Services keep the stats their backend last published (pools, capabilities).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.add_column(
            sa.Column("stats", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"))
        )
        batch.add_column(sa.Column("stats_updated_at", TS))


def downgrade() -> None:
    with op.batch_alter_table("services") as batch:
        batch.drop_column("stats_updated_at")
        batch.drop_column("stats")
