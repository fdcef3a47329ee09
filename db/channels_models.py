"""Channels shop (视频号小店) sync: the transactional outbox of window and listing changes, and
what we last pushed to / pulled from each promoter's Channels window (issue 4)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from db.models import Base, created_at_column


class ChannelsOutbox(Base):
    """One row per thing the Channels shop must be brought in line with: `window:{window_id}:{product_id}`
    (a window item) or `product:{product_id}` (listing, stock). Written in the transaction of the
    change; a repeated change bumps `version` on the same row (the business key is unique), so the
    drain always applies the latest state and marks the row done only if no change came meanwhile."""

    __tablename__ = "channels_outbox"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # window | product
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    window_id: Mapped[int | None] = mapped_column(ForeignKey("windows.id"))
    reason: Mapped[str] = mapped_column(String(40))  # the latest change: mount, hide, sold_out, stock ...
    status: Mapped[str] = mapped_column(String(10), default="pending", server_default="pending")
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = created_at_column()
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    __table_args__ = (
        Index("ix_channels_outbox_pending", "id", postgresql_where=text("status = 'pending'")),
    )


class ChannelsWindowItem(Base):
    """A window item as the Channels shop has it: what the last sync left there (`present`,
    `hidden`, `absent`) and the figures the last reconcile pulled (status, stock, sales)."""

    __tablename__ = "channels_window_items"
    window_id: Mapped[int] = mapped_column(ForeignKey("windows.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    finder_id: Mapped[str] = mapped_column(String(64))
    channels_product_id: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))
    synced_at: Mapped[datetime] = created_at_column()
    shop_status: Mapped[int | None] = mapped_column(Integer)
    shop_stock: Mapped[int | None] = mapped_column(BigInteger)
    shop_sales: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    stats_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChannelsEvent(Base):
    """Each shop event (push or pull) once, by its key; repeats and replays find the row and stop."""

    __tablename__ = "channels_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    shop_order_id: Mapped[str] = mapped_column(String(32), index=True)
    after_sale_order_id: Mapped[str | None] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(8))  # push | pull
    create_time: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[datetime] = created_at_column()


class ChannelsPullCursor(Base):
    """How far the `channels-pull` schedule has read each list (orders, after-sales), in shop time."""

    __tablename__ = "channels_pull_cursors"
    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    until: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
