"""ChannelsSyncWorkflow's activities: drain the outbox against the Channels shop API, and the
periodic reconcile that pulls product status/stock and window stats back into our tables.

Every call is idempotent by a business key: the shop product is `cc-product-{id}` (looked up by
that out_product_id before it is ever added again), a window item is (promoter's finder_id,
shop product id), adding a window item again only sets its hide flag, and taking off something
the window no longer has counts as done. An outbox row is marked done only if no change came
while it was applied (its version is unchanged); otherwise the next pass applies the newer state."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import channels_outbox
from activities.catalog import notify, take_off_windows
from db.catalog_models import ChannelsListing, ProductDetail
from db.channels_models import ChannelsWindowItem
from db.models import Product, Sku, Supplier, Window, WindowProduct
from domain.catalog import OFF_DELISTED, OFF_VIOLATION, WindowItemStatus
from domain.channels import (
    ABSENT,
    HIDDEN,
    PRESENT,
    SHOP_DELISTED,
    SHOP_ON_SALE,
    SHOP_VIOLATION_STATUSES,
    DrainResult,
    ReconcileResult,
)
from integrations.channels import ChannelsClient, ProductDraft
from integrations.channels import Sku as ChannelsSku
from integrations.errors import PartnerRejected

WINDOW_ITEM_NOT_FOUND = {"10022003", "10024020"}  # 视频号助手 / 机构 window APIs


class ProductGone(Exception):
    """The product row is gone (never in the shop): nothing to mirror."""


def out_product_id(product_id: int) -> str:
    return f"cc-product-{product_id}"


# --- the shop's product -------------------------------------------------------------------------
def _product_intent(sessions: sessionmaker[Session], product_id: int) -> tuple[ProductDraft, dict]:
    out_id = out_product_id(product_id)
    with sessions.begin() as s:
        product, detail = s.get(Product, product_id), s.get(ProductDetail, product_id)
        if product is None:
            raise ProductGone(product_id)
        s.execute(insert(ChannelsListing).values(product_id=product_id, out_product_id=out_id,
                                                 status="PENDING_PARTNER_API").on_conflict_do_nothing())
        listing = s.get(ChannelsListing, product_id)
        skus = s.scalars(select(Sku).where(Sku.product_id == product_id).order_by(Sku.id)).all()
        images = list(detail.images) if detail and detail.images else []
        draft = ProductDraft(
            title=product.title[:60], head_imgs=images[:9] or ["https://img.example/placeholder.jpg"],
            out_product_id=out_id,
            skus=[ChannelsSku(out_sku_id=f"cc-sku-{sku.id}", sale_price=sku.price_fen, stock_num=sku.stock,
                              sku_attrs=[{"attr_key": "规格", "attr_value": sku.spec or "默认"}]) for sku in skus])
        return draft, {"status": listing.status, "channels_product_id": listing.channels_product_id}


def _listing_status(sessions, product_id: int, status: str, channels_product_id: str | None = None) -> None:
    with sessions.begin() as s:
        listing = s.get(ChannelsListing, product_id, with_for_update=True)
        listing.status = status
        if channels_product_id is not None:
            listing.channels_product_id = channels_product_id


async def ensure_shop_product(sessions: sessionmaker[Session], channels: ChannelsClient, product_id: int,
                              *, on_sale: bool) -> str:
    """The shop has this product, with our titles, prices and stock, on sale or not: its shop id.
    Intent first (ChannelsListing, keyed by out_product_id); the row says ADDING while an add is
    in flight, so a retry after a lost answer finds the product instead of adding it twice."""
    draft, listing = await asyncio.to_thread(_product_intent, sessions, product_id)
    channels_id = listing["channels_product_id"]
    if channels_id is None:
        if listing["status"] == "ADDING":
            found = await channels.find_product(draft.out_product_id)
            channels_id = found.product_id if found else None
        if channels_id is None:
            await asyncio.to_thread(_listing_status, sessions, product_id, "ADDING")
            channels_id = await channels.add_product(draft)
        await asyncio.to_thread(_listing_status, sessions, product_id, "ADDED", channels_id)
    shop = await channels.get_product(channels_id, draft=True)
    ours = [(k.sale_price, k.stock_num) for k in draft.skus]
    if [(k.sale_price, k.stock_num) for k in shop.skus] != ours or shop.title != draft.title:
        await channels.update_product(channels_id, draft)
    if shop.status in SHOP_VIOLATION_STATUSES:
        status = "VIOLATION"  # the platform's decision: never relisted by us
    elif on_sale:
        if shop.status != SHOP_ON_SALE:
            await channels.list_product(channels_id)
        status = "LISTED"
    else:
        if shop.status == SHOP_ON_SALE:
            await channels.delist_product(channels_id)
        status = "DELISTED"
    await asyncio.to_thread(_listing_status, sessions, product_id, status)
    return channels_id


class ChannelsSyncActivities:
    def __init__(self, sessions: sessionmaker[Session], channels: ChannelsClient):
        self.sessions = sessions
        self.channels = channels

    # --- the outbox ---------------------------------------------------------------------------
    @activity.defn
    async def drain_outbox(self, batch_size: int, lease_seconds: int) -> DrainResult:
        """Claim up to `batch_size` pending rows (SKIP LOCKED, with a lease, so any number of drains
        may run), apply each to the shop, mark it done. The shop being down raises (retried with
        backoff; the claimed rows are released first); a business refusal fails only its row."""
        rows = await asyncio.to_thread(self._claim, batch_size, lease_seconds)
        result = DrainResult()
        for i, row in enumerate(rows):
            try:
                await self._apply(row)
            except ProductGone:
                pass
            except PartnerRejected as err:
                await asyncio.to_thread(self._finish, row, f"{err.code} {err}")
                result.failed += 1
                activity.logger.warning("channels_sync.row_failed key=%s error=%s", row["key"], err)
                continue
            except BaseException:
                await asyncio.to_thread(self._release, [r["id"] for r in rows[i:]])
                raise
            await asyncio.to_thread(self._finish, row, None)
            result.applied += 1
        result.more = await asyncio.to_thread(self._claimable)
        return result

    def _claim(self, batch_size: int, lease_seconds: int) -> list[dict]:
        with self.sessions.begin() as s:
            rows = s.execute(text("""
                UPDATE channels_outbox SET lease_until = now() + make_interval(secs => :lease),
                                           attempts = attempts + 1
                WHERE id IN (SELECT id FROM channels_outbox
                             WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now())
                             ORDER BY id LIMIT :n FOR UPDATE SKIP LOCKED)
                RETURNING id, key, kind, window_id, product_id, version, reason"""),
                {"lease": lease_seconds, "n": batch_size}).mappings().all()
            return sorted((dict(r) for r in rows), key=lambda r: r["id"])

    def _release(self, ids: list[int]) -> None:
        if ids:
            with self.sessions.begin() as s:
                s.execute(text("UPDATE channels_outbox SET lease_until = NULL WHERE id = ANY(:ids)"), {"ids": ids})

    def _finish(self, row: dict, error: str | None) -> None:
        """Done (or failed) if nothing changed meanwhile; a newer change keeps it pending."""
        with self.sessions.begin() as s:
            s.execute(text("""
                UPDATE channels_outbox SET
                  status = CASE WHEN version = :v THEN :status ELSE 'pending' END,
                  done_at = CASE WHEN version = :v THEN now() ELSE NULL END,
                  last_error = CASE WHEN version = :v THEN :error ELSE NULL END,
                  lease_until = NULL
                WHERE id = :id"""), {"v": row["version"], "id": row["id"], "error": error,
                                     "status": "failed" if error else "done"})

    def _claimable(self) -> bool:
        with self.sessions() as s:
            return s.scalar(text("""SELECT EXISTS (SELECT 1 FROM channels_outbox WHERE status = 'pending'
                                    AND (lease_until IS NULL OR lease_until < now()))"""))

    async def _apply(self, row: dict) -> None:
        if row["kind"] == "product":
            wanted = await asyncio.to_thread(self._product_wanted, row["product_id"])
            if wanted is not None:
                await ensure_shop_product(self.sessions, self.channels, row["product_id"], on_sale=wanted)
            return
        window_id, product_id = row["window_id"], row["product_id"]
        finder, wanted, shop_id = await asyncio.to_thread(self._window_wanted, window_id, product_id)
        if finder is None:
            return  # no Channels window bound: nothing to mirror
        if wanted in (PRESENT, HIDDEN):
            shop_id = await ensure_shop_product(self.sessions, self.channels, product_id, on_sale=True)
            await self.channels.add_window_product(shop_id, finder_id=finder, hidden=wanted == HIDDEN)
        elif shop_id is not None:
            try:
                await self.channels.remove_window_product(shop_id, finder_id=finder)
            except PartnerRejected as err:
                if err.code not in WINDOW_ITEM_NOT_FOUND:
                    raise  # already off: that is what we wanted
        await asyncio.to_thread(self._window_synced, window_id, product_id, finder, shop_id, wanted)

    def _product_wanted(self, product_id: int) -> bool | None:
        """On sale at the shop (True), off sale (False), or no shop copy wanted (None)."""
        with self.sessions() as s:
            row = s.execute(select(Product, Supplier).join(Supplier, Supplier.id == Product.supplier_id)
                            .where(Product.id == product_id)).first()
            if row is None:
                return None
            product, supplier = row
            if product.status == "listed" and supplier.status == "active":
                return True
            return False if s.get(ChannelsListing, product_id) is not None else None

    def _window_wanted(self, window_id: int, product_id: int) -> tuple[str | None, str, str | None]:
        with self.sessions() as s:
            window = s.get(Window, window_id)
            if window is None or not window.channels_finder_id:
                return None, ABSENT, None
            wp = s.get(WindowProduct, (window_id, product_id))
            row = s.execute(select(Product, Supplier).join(Supplier, Supplier.id == Product.supplier_id)
                            .where(Product.id == product_id)).first()
            sellable = row is not None and row[0].status == "listed" and row[1].status == "active"
            wanted = ABSENT
            if wp is not None and sellable:
                wanted = {WindowItemStatus.MOUNTED: PRESENT, WindowItemStatus.HIDDEN: HIDDEN}.get(wp.status, ABSENT)
            listing = s.get(ChannelsListing, product_id)
            item = s.get(ChannelsWindowItem, (window_id, product_id))
            shop_id = (listing.channels_product_id if listing else None) or (item.channels_product_id if item else None)
            return window.channels_finder_id, wanted, shop_id

    def _window_synced(self, window_id: int, product_id: int, finder: str, shop_id: str | None, state: str) -> None:
        with self.sessions.begin() as s:
            s.execute(insert(ChannelsWindowItem).values(
                window_id=window_id, product_id=product_id, finder_id=finder, channels_product_id=shop_id,
                state=state).on_conflict_do_update(
                index_elements=["window_id", "product_id"],
                set_={"finder_id": finder, "channels_product_id": shop_id, "state": state,
                      "synced_at": datetime.now(UTC)}))

    # --- the periodic reconcile ----------------------------------------------------------------
    @activity.defn
    async def reconcile_shop(self) -> ReconcileResult:
        """Pull from the shop: each product's status (violation or delisted there → off every
        window, supplier and promoters told) and each window item's stock and sales; window items
        the shop lost, or that never got there, are queued again."""
        result = ReconcileResult()
        for product_id, shop_id in await asyncio.to_thread(self._shop_products):
            try:
                shop = await self.channels.get_product(shop_id)
            except PartnerRejected as err:
                activity.logger.warning("channels_reconcile.product_unreadable id=%s error=%s", shop_id, err)
                continue
            result.products_checked += 1
            result.products_taken_off += await asyncio.to_thread(self._shop_status, product_id, shop.status)
            activity.heartbeat(product_id)
        for item in await asyncio.to_thread(self._shop_window_items):
            try:
                got = await self.channels.get_window_product(item["shop_id"], finder_id=item["finder"])
            except PartnerRejected as err:
                if err.code not in WINDOW_ITEM_NOT_FOUND:
                    raise
                got = None
            result.window_items_checked += 1
            await asyncio.to_thread(self._window_stats, item, got)
            activity.heartbeat(item["window_id"])
        result.window_items_requeued = await asyncio.to_thread(self._requeue_drift)
        return result

    def _shop_products(self) -> list[tuple[int, str]]:
        with self.sessions() as s:
            return [tuple(r) for r in s.execute(
                select(ChannelsListing.product_id, ChannelsListing.channels_product_id)
                .where(ChannelsListing.channels_product_id.is_not(None)).order_by(ChannelsListing.product_id))]

    def _shop_status(self, product_id: int, shop_status: int) -> int:
        """The shop says the product is off sale or in violation while we sell it: it leaves every window."""
        with self.sessions.begin() as s:
            row = s.execute(select(Product, Supplier).join(Supplier, Supplier.id == Product.supplier_id)
                            .where(Product.id == product_id).with_for_update(of=Product)).first()
            product, supplier = row
            if product.status != "listed" or supplier.status != "active":
                return 0
            if shop_status in SHOP_VIOLATION_STATUSES:
                product.status, reason, why = "violation", OFF_VIOLATION, "被视频号小店判定违规，已下架"
                s.get(ChannelsListing, product_id, with_for_update=True).status = "VIOLATION"
            elif shop_status == SHOP_DELISTED:
                product.status, reason, why = "delisted", OFF_DELISTED, "已在视频号小店下架"
                s.get(ChannelsListing, product_id, with_for_update=True).status = "DELISTED"
            else:
                return 0
            removed = take_off_windows(s, [product_id], reason)
            notify(s, user_id=supplier.owner_user_id, kind="product_off_shop", subject_type="product",
                   subject_id=product_id, key=f"product:{product_id}:off_shop:{reason}",
                   message=f"商品「{product.title}」{why}，已从 {removed} 个橱窗撤下")
            return 1

    def _shop_window_items(self) -> list[dict]:
        with self.sessions() as s:
            rows = s.execute(select(ChannelsWindowItem).where(ChannelsWindowItem.state.in_((PRESENT, HIDDEN)),
                                                              ChannelsWindowItem.channels_product_id.is_not(None)))
            return [{"window_id": i.window_id, "product_id": i.product_id, "finder": i.finder_id,
                     "shop_id": i.channels_product_id} for (i,) in rows]

    def _window_stats(self, item: dict, got) -> None:
        with self.sessions.begin() as s:
            row = s.get(ChannelsWindowItem, (item["window_id"], item["product_id"]), with_for_update=True)
            if row is None:
                return
            if got is None:  # the shop lost it: the drift check queues it again
                row.state = ABSENT
                return
            row.shop_status, row.shop_stock, row.shop_sales = got.status, got.stock, got.sales
            row.stats_at = datetime.now(UTC)

    def _requeue_drift(self) -> int:
        """Window items whose shop copy is not what we want (never synced, lost, a failed row)."""
        with self.sessions.begin() as s:
            rows = s.execute(
                select(WindowProduct.window_id, WindowProduct.product_id, WindowProduct.status,
                       ChannelsWindowItem.state)
                .join(Window, Window.id == WindowProduct.window_id)
                .join(Product, Product.id == WindowProduct.product_id)
                .join(Supplier, Supplier.id == Product.supplier_id)
                .outerjoin(ChannelsWindowItem, (ChannelsWindowItem.window_id == WindowProduct.window_id)
                           & (ChannelsWindowItem.product_id == WindowProduct.product_id))
                .where(Window.channels_finder_id.is_not(None), Product.status == "listed",
                       Supplier.status == "active",
                       WindowProduct.status.in_((WindowItemStatus.MOUNTED, WindowItemStatus.HIDDEN)))).all()
            n = 0
            for window_id, product_id, status, state in rows:
                wanted = PRESENT if status == WindowItemStatus.MOUNTED else HIDDEN
                if state != wanted:
                    channels_outbox.window_changed(s, window_id, product_id, "reconcile")
                    n += 1
            return n

    def all(self) -> list:
        return [self.drain_outbox, self.reconcile_shop]

