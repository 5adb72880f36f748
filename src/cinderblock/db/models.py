"""Tables. Changed only together with a new Alembic revision in migrations/versions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# MySQL/MariaDB DATETIME drops microseconds unless asked; Cinder shows them.
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def utcnow() -> dt.datetime:
    """Naive UTC, as Cinder stores and shows timestamps."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class VolumeType(Base):
    __tablename__ = "volume_types"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    description: Mapped[str | None] = mapped_column(String(255))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)

    extra_specs: Mapped[list[VolumeTypeExtraSpec]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class VolumeTypeExtraSpec(Base):
    __tablename__ = "volume_type_extra_specs"
    __table_args__ = (UniqueConstraint("volume_type_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volume_type_id: Mapped[str] = mapped_column(
        ForeignKey("volume_types.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str | None] = mapped_column(String(255))


class Volume(Base):
    __tablename__ = "volumes"
    __table_args__ = (
        Index("ix_volumes_project_created", "project_id", "created_at"),
        Index("ix_volumes_host_status", "host", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    host: Mapped[str | None] = mapped_column(String(255))
    cluster_name: Mapped[str | None] = mapped_column(String(255))
    service_uuid: Mapped[str | None] = mapped_column(String(36))
    availability_zone: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(64))
    previous_status: Mapped[str | None] = mapped_column(String(64))
    attach_status: Mapped[str] = mapped_column(String(64), default="detached")
    migration_status: Mapped[str | None] = mapped_column(String(64))
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    multiattach: Mapped[bool] = mapped_column(Boolean, default=False)
    volume_type_id: Mapped[str] = mapped_column(ForeignKey("volume_types.id"))
    snapshot_id: Mapped[str | None] = mapped_column(String(36))
    source_volid: Mapped[str | None] = mapped_column(String(36))
    group_id: Mapped[str | None] = mapped_column(String(36))
    provider_location: Mapped[str | None] = mapped_column(String(255))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    provider_auth: Mapped[str | None] = mapped_column(String(255))
    replication_status: Mapped[str | None] = mapped_column(String(64))
    encryption_key_id: Mapped[str | None] = mapped_column(String(36))
    consumes_quota: Mapped[bool] = mapped_column(Boolean, default=True)
    shared_targets: Mapped[bool | None] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)

    volume_type: Mapped[VolumeType] = relationship(lazy="joined")
    volume_metadata: Mapped[list[VolumeMetadata]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    volume_admin_metadata: Mapped[list[VolumeAdminMetadata]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )
    volume_attachments: Mapped[list[VolumeAttachment]] = relationship(
        lazy="selectin", viewonly=True
    )


class VolumeMetadata(Base):
    __tablename__ = "volume_metadata"
    __table_args__ = (UniqueConstraint("volume_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))


class VolumeAdminMetadata(Base):
    __tablename__ = "volume_admin_metadata"
    __table_args__ = (UniqueConstraint("volume_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (Index("ix_snapshots_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    project_id: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(64))
    progress: Mapped[str | None] = mapped_column(String(255))
    volume_size: Mapped[int] = mapped_column(Integer)
    display_name: Mapped[str | None] = mapped_column(String(255))
    display_description: Mapped[str | None] = mapped_column(String(255))
    provider_location: Mapped[str | None] = mapped_column(String(255))
    provider_id: Mapped[str | None] = mapped_column(String(255))
    group_snapshot_id: Mapped[str | None] = mapped_column(String(36))
    consumes_quota: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)

    snapshot_metadata: Mapped[list[SnapshotMetadata]] = relationship(
        cascade="all, delete-orphan", lazy="selectin"
    )


class SnapshotMetadata(Base):
    __tablename__ = "snapshot_metadata"
    __table_args__ = (UniqueConstraint("snapshot_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    snapshot_id: Mapped[str] = mapped_column(
        ForeignKey("snapshots.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(255))


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_project_created", "project_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(255))
    resource_type: Mapped[str | None] = mapped_column(String(255))
    resource_uuid: Mapped[str | None] = mapped_column(String(36))
    event_id: Mapped[str] = mapped_column(String(255))
    message_level: Mapped[str] = mapped_column(String(255))
    user_message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Service(Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("host", "binary"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    binary: Mapped[str] = mapped_column(String(255))
    topic: Mapped[str] = mapped_column(String(255))
    availability_zone: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled_reason: Mapped[str | None] = mapped_column(String(255))
    report_count: Mapped[int] = mapped_column(Integer, default=0)
    # JSON of the stats the backend last published (volume services only).
    stats: Mapped[str | None] = mapped_column(
        Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
    )
    stats_updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class ManageClaim(Base):
    """A backend object some manage request is adopting right now (one winner)."""

    __tablename__ = "manage_claims"

    backend_host: Mapped[str] = mapped_column(String(255), primary_key=True)
    reference: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(36), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class VolumeAttachment(Base):
    """One host's (or server's) use of a volume: reserved -> attaching -> attached."""

    __tablename__ = "volume_attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    project_id: Mapped[str] = mapped_column(String(255))
    instance_uuid: Mapped[str | None] = mapped_column(String(36))
    attached_host: Mapped[str | None] = mapped_column(String(255))
    mountpoint: Mapped[str | None] = mapped_column(String(255))
    attach_status: Mapped[str] = mapped_column(String(64))
    attach_mode: Mapped[str | None] = mapped_column(String(36))
    connector: Mapped[str | None] = mapped_column(Text)  # JSON
    connection_info: Mapped[str | None] = mapped_column(Text)  # JSON
    attach_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    detach_time: Mapped[dt.datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class Quota(Base):
    """A project's own hard limit for one resource; without a row the default applies."""

    __tablename__ = "quotas"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # volumes, gigabytes, ... or per type: volumes_<type name> (up to 255 + prefix)
    resource: Mapped[str] = mapped_column(String(300), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class QuotaUsage(Base):
    """What a project uses of one resource. Every charge locks this row first, so checking
    the limit and adding to the counter happen under one lock (see repo/quotas.py)."""

    __tablename__ = "quota_usages"

    project_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    resource: Mapped[str] = mapped_column(String(300), primary_key=True)
    in_use: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime | None] = mapped_column(Timestamp)


class QuotaCharge(Base):
    """One amount charged to a project for one object (volume or snapshot id).

    Releasing an object gives back exactly what was charged for it, whatever its row
    says now (sizes change; a manage learns the size late; old rows predate quotas).
    `reserved` charges (an extend in flight) count in quota_usages.reserved until the
    volume manager commits or rolls them back.
    """

    __tablename__ = "quota_charges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    object_id: Mapped[str] = mapped_column(String(36), index=True)
    project_id: Mapped[str] = mapped_column(String(255))
    resource: Mapped[str] = mapped_column(String(300))
    amount: Mapped[int] = mapped_column(Integer)
    reserved: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
