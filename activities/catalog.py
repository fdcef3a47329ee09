"""Suppliers, products, windows and stock on our database: the activities of
SupplierOnboardingWorkflow and ProductReviewWorkflow, and the stock/suspension rules the API
and the order activities share. Each activity is idempotent (compare-and-set on status,
notification keys), so a retry after a crash never does anything twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import channels_outbox
from activities.errors import business_error
from db.catalog_models import (
    ChannelsListing,
    Notification,
    ProductDetail,
    ProfitSharingReceiver,
    SupplierProfile,
)
from db.models import Product, Promoter, Sku, Supplier, Window, WindowProduct
from domain.catalog import (
    LOW_STOCK_THRESHOLD,
    OFF_DELISTED,
    OFF_PRODUCT_SUSPENDED,
    OFF_SOLD_OUT,
    OFF_SUPPLIER_SUSPENDED,
    OFF_VIOLATION,
    OFF_WITHDRAWN,
    PRODUCT_WITHDRAWN,
    PRODUCT_SUSPENDED,
    ProductDecision,
    ProductSubmission,
    PromoterMaterial,
    SkuInput,
    WindowItemStatus,
    product_problems,
)
from domain.suppliers import (
    CheckResult,
    Problem,
    QualificationDocument,
    ReviewDecision,
    SupplierApplication,
    application_problems,
    categories_needing_no_qualification,
)
from integrations.channels import ProductDraft as ChannelsDraft
from integrations.channels import Sku as ChannelsSku
from integrations.errors import PartnerRejected


# --- shared rules on a session (API and activities) ------------------------------------------
def notify(s: Session, *, kind: str, subject_type: str, subject_id: int | str, message: str,
           user_id: int | None = None, role: str | None = None, key: str | None = None) -> bool:
    """Record a notification once per `key` (always when key is None)."""
    stmt = insert(Notification).values(
        recipient_user_id=user_id, recipient_role=role, kind=kind, subject_type=subject_type,
        subject_id=str(subject_id), message=message, idempotency_key=key)
    if key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["idempotency_key"])
    return s.execute(stmt.returning(Notification.id)).scalar() is not None


def duplicate_licence(s: Session, licence_no: str, except_supplier: int | None = None) -> int | None:
    """The supplier holding this licence in an open application or an account, if any."""
    query = select(SupplierProfile.supplier_id).where(SupplierProfile.licence_no == licence_no,
                                                      SupplierProfile.open)
    if except_supplier is not None:
        query = query.where(SupplierProfile.supplier_id != except_supplier)
    return s.scalar(query.limit(1))


def approved_categories(s: Session, supplier: Supplier) -> set[str]:
    """Categories a supplier may sell in: those of its approved application. Suppliers created
    before onboarding existed (no profile) may sell only where no qualification is needed."""
    profile = s.get(SupplierProfile, supplier.id)
    if profile is None:
        return categories_needing_no_qualification()
    return set(profile.categories) if supplier.status in ("active", "suspended") else set()


def application_of(profile: SupplierProfile, name: str) -> SupplierApplication:
    """The stored application, as stored: the checks report what is wrong with it, they never crash."""
    return SupplierApplication.model_construct(
        kind=profile.kind, name=name, licence_no=profile.licence_no, contact_name=profile.contact_name,
        contact_phone=profile.contact_phone, categories=list(profile.categories),
        documents=[QualificationDocument.model_construct(**d) for d in profile.documents],
        wechatpay_mchid=profile.wechatpay_mchid)


def submission_of(s: Session, product: Product) -> ProductSubmission:
    detail = s.get(ProductDetail, product.id)
    return ProductSubmission.model_construct(
        title=product.title, category=product.category,
        description=detail.description if detail else "",
        images=detail.images if detail else [], video_url=detail.video_url if detail else None,
        materials=[PromoterMaterial.model_validate(m) for m in (detail.materials if detail else [])],
        skus=[SkuInput.model_construct(spec=k.spec, price_fen=k.price_fen, stock=k.stock,
                                       commission_bps=k.commission_bps,
                                       commission_fixed_fen=k.commission_fixed_fen) for k in product.skus])


def _window_rows(s: Session, product_ids: list[int], statuses: tuple[str, ...], reason: str | None = None,
                 window_ids: list[int] | None = None):
    query = (select(WindowProduct, Window, Promoter, Product)
             .join(Window, WindowProduct.window_id == Window.id)
             .join(Promoter, Window.promoter_id == Promoter.id)
             .join(Product, WindowProduct.product_id == Product.id)
             .where(WindowProduct.product_id.in_(product_ids), WindowProduct.status.in_(statuses))
             .with_for_update(of=WindowProduct))
    if reason is not None:
        query = query.where(WindowProduct.off_reason == reason)
    if window_ids is not None:
        query = query.where(WindowProduct.window_id.in_(window_ids))
    return s.execute(query).all()


def take_off_windows(s: Session, product_ids: list[int], reason: str, *, window_ids: list[int] | None = None) -> int:
    """Every window showing these products stops showing them; each promoter is told."""
    if not product_ids:
        return 0
    rows = _window_rows(s, product_ids, (WindowItemStatus.MOUNTED, WindowItemStatus.HIDDEN), window_ids=window_ids)
    why = {OFF_SOLD_OUT: "已售罄", OFF_SUPPLIER_SUSPENDED: "供应商已被暂停", OFF_DELISTED: "已在视频号小店下架",
           OFF_VIOLATION: "被视频号小店判定违规", OFF_PRODUCT_SUSPENDED: "被平台暂停销售",
           OFF_WITHDRAWN: "已被供应商下架",
           "window_closed": "因橱窗被关闭"}.get(reason, reason)
    for wp, window, promoter, product in rows:
        wp.status, wp.off_reason = WindowItemStatus.OFF_SALE, reason
        channels_outbox.window_changed(s, window.id, product.id, reason)
        notify(s, user_id=promoter.user_id, kind="window_product_off_sale", subject_type="product",
               subject_id=product.id, message=f"「{product.title}」{why}，已从你的橱窗「{window.name}」下架")
    return len(rows)


def restore_windows(s: Session, product_ids: list[int], reason: str) -> int:
    """Undo `take_off_windows` for the same reason (restocked, supplier reinstated)."""
    if not product_ids:
        return 0
    rows = _window_rows(s, product_ids, (WindowItemStatus.OFF_SALE,), reason)
    for wp, window, promoter, product in rows:
        wp.status, wp.off_reason = WindowItemStatus.MOUNTED, None
        channels_outbox.window_changed(s, window.id, product.id, f"back:{reason}")
        notify(s, user_id=promoter.user_id, kind="window_product_back", subject_type="product",
               subject_id=product.id, message=f"「{product.title}」已恢复销售，重新在橱窗「{window.name}」展示")
    return len(rows)


def product_in_stock(s: Session, product_id: int) -> bool:
    return (s.scalar(select(func.coalesce(func.sum(Sku.stock), 0)).where(Sku.product_id == product_id)) or 0) > 0


def restock(s: Session, sku_id: int, quantity: int) -> None:
    """Give units back to a SKU; windows follow it back into stock."""
    restored = s.execute(update(Sku).where(Sku.id == sku_id)
                         .values(stock=Sku.stock + quantity).returning(Sku.stock)).scalar()
    stock_changed(s, sku_id, restored - quantity, restored)


def stock_changed(s: Session, sku_id: int, before: int, after: int,
                  threshold: int = LOW_STOCK_THRESHOLD) -> None:
    """After a SKU's stock moved from `before` to `after` (supplier update, order, cancellation):
    low-stock alert on crossing below the threshold, windows follow the product in and out of stock."""
    if before == after:
        return
    row = s.execute(select(Sku, Product, Supplier).join(Product, Sku.product_id == Product.id)
                    .join(Supplier, Product.supplier_id == Supplier.id).where(Sku.id == sku_id)).first()
    if row is None:
        return
    sku, product, supplier = row
    if s.get(ChannelsListing, product.id) is not None:  # the shop's copy follows our stock
        channels_outbox.product_changed(s, product.id, "stock")
    label = f"「{product.title}」{sku.spec}".strip()
    if 0 < after < threshold <= before:
        notify(s, user_id=supplier.owner_user_id, kind="low_stock", subject_type="sku", subject_id=sku_id,
               message=f"{label} 库存仅剩 {after} 件（低于 {threshold}），请及时补货")
    if after == 0 and before > 0:
        notify(s, user_id=supplier.owner_user_id, kind="sku_sold_out", subject_type="sku", subject_id=sku_id,
               message=f"{label} 已售罄")
        if not product_in_stock(s, product.id):
            take_off_windows(s, [product.id], OFF_SOLD_OUT)
    elif before == 0 and after > 0 and supplier.status == "active" and product.status == "listed":
        restore_windows(s, [product.id], OFF_SOLD_OUT)


def suspend_supplier(s: Session, supplier_id: int, reason: str, actor_user_id: int) -> tuple[int, int]:
    """Violations: the supplier stops selling, every listed product is taken down and leaves
    every window. Returns (products delisted, window entries removed)."""
    supplier = s.get(Supplier, supplier_id, with_for_update=True)
    product_ids = list(s.scalars(select(Product.id).where(Product.supplier_id == supplier_id,
                                                          Product.status == "listed")))
    s.execute(update(Product).where(Product.id.in_(product_ids)).values(status="suspended"))
    for pid in product_ids:
        channels_outbox.product_changed(s, pid, "supplier_suspended")
    removed = take_off_windows(s, product_ids, OFF_SUPPLIER_SUSPENDED)
    supplier.status = "suspended"
    profile = s.get(SupplierProfile, supplier_id)
    if profile is not None:
        profile.suspended_reason, profile.updated_at = reason, datetime.now(UTC)
    notify(s, user_id=supplier.owner_user_id, kind="supplier_suspended", subject_type="supplier",
           subject_id=supplier_id, message=f"店铺因违规被暂停（{reason}），{len(product_ids)} 件商品已下架")
    return len(product_ids), removed


def reinstate_supplier(s: Session, supplier_id: int, actor_user_id: int) -> tuple[int, int]:
    supplier = s.get(Supplier, supplier_id, with_for_update=True)
    product_ids = list(s.scalars(select(Product.id).where(Product.supplier_id == supplier_id,
                                                          Product.status == "suspended")))
    s.execute(update(Product).where(Product.id.in_(product_ids)).values(status="listed"))
    for pid in product_ids:
        channels_outbox.product_changed(s, pid, "supplier_reinstated")
    supplier.status = "active"
    profile = s.get(SupplierProfile, supplier_id)
    if profile is not None:
        profile.suspended_reason, profile.updated_at = None, datetime.now(UTC)
    in_stock = [pid for pid in product_ids if product_in_stock(s, pid)]
    restored = restore_windows(s, in_stock, OFF_SUPPLIER_SUSPENDED)
    # Sold out while suspended: stays off, for the sold-out reason, until restocked.
    _relabel_off(s, list(set(product_ids) - set(in_stock)), (OFF_SUPPLIER_SUSPENDED,), OFF_SOLD_OUT)
    notify(s, user_id=supplier.owner_user_id, kind="supplier_reinstated", subject_type="supplier",
           subject_id=supplier_id, message=f"店铺已恢复，{len(product_ids)} 件商品重新上架")
    return len(product_ids), restored


def _relabel_off(s: Session, product_ids: list[int], reasons: tuple[str, ...], reason: str) -> None:
    """Window entries off sale for one of `reasons` are now off for `reason`: the one whose
    lifting brings them back."""
    if product_ids:
        for wp, *_ in _window_rows(s, product_ids, (WindowItemStatus.OFF_SALE,)):
            if wp.off_reason in reasons:
                wp.off_reason = reason


# Reasons a product is off sale that its suspension overrides (a closed window stays closed).
_PRODUCT_OFF_REASONS = (OFF_SOLD_OUT, OFF_SUPPLIER_SUSPENDED, OFF_VIOLATION, OFF_DELISTED, OFF_WITHDRAWN)


def suspend_product(s: Session, product: Product, reason: str) -> int:
    """Support takes one product off sale (counterfeit, complaints, wrong labelling): it leaves
    the shop and every window, its supplier and promoters are told. Returns window entries removed."""
    supplier = s.get(Supplier, product.supplier_id)
    product.status, product.suspended_reason = PRODUCT_SUSPENDED, reason
    channels_outbox.product_changed(s, product.id, "product_suspended")
    removed = take_off_windows(s, [product.id], OFF_PRODUCT_SUSPENDED)
    _relabel_off(s, [product.id], _PRODUCT_OFF_REASONS, OFF_PRODUCT_SUSPENDED)
    notify(s, user_id=supplier.owner_user_id, kind="product_suspended", subject_type="product",
           subject_id=product.id, message=f"商品「{product.title}」被平台暂停销售（{reason}），已从 {removed} 个橱窗撤下")
    return removed


def reinstate_product(s: Session, product: Product) -> int:
    """Lift a product's suspension: back on sale and in the windows it left, unless its supplier
    is suspended (then it waits for that) or it is sold out (back when restocked). A product the
    shop had found in violation comes back too: support reviewed it. Returns entries restored."""
    supplier = s.get(Supplier, product.supplier_id)
    product.suspended_reason = None
    if supplier.status == "suspended":
        product.status = "suspended"
        _relabel_off(s, [product.id], (OFF_PRODUCT_SUSPENDED,), OFF_SUPPLIER_SUSPENDED)
        return 0
    product.status = "listed"
    channels_outbox.product_changed(s, product.id, "product_reinstated")
    restored = 0
    if product_in_stock(s, product.id):
        restored = restore_windows(s, [product.id], OFF_PRODUCT_SUSPENDED)
    else:
        _relabel_off(s, [product.id], (OFF_PRODUCT_SUSPENDED,), OFF_SOLD_OUT)
    notify(s, user_id=supplier.owner_user_id, kind="product_reinstated", subject_type="product",
           subject_id=product.id, message=f"商品「{product.title}」已恢复销售，重新在 {restored} 个橱窗展示")
    return restored


def withdraw_product(s: Session, product: Product) -> int:
    """Its supplier takes a listed product off sale (下架): it leaves the shop and every window,
    the promoters are told. Returns window entries removed."""
    product.status = PRODUCT_WITHDRAWN
    channels_outbox.product_changed(s, product.id, "product_withdrawn")
    removed = take_off_windows(s, [product.id], OFF_WITHDRAWN)
    _relabel_off(s, [product.id], (OFF_SOLD_OUT, OFF_DELISTED), OFF_WITHDRAWN)
    return removed


def relist_product(s: Session, product: Product) -> int:
    """Its supplier puts a withdrawn product back on sale (上架): in the windows it left, unless
    it is sold out (then back when restocked). Returns entries restored."""
    product.status = "listed"
    channels_outbox.product_changed(s, product.id, "product_relisted")
    if product_in_stock(s, product.id):
        return restore_windows(s, [product.id], OFF_WITHDRAWN)
    _relabel_off(s, [product.id], (OFF_WITHDRAWN,), OFF_SOLD_OUT)
    return 0


# --- workflow activities -----------------------------------------------------------------------
class CatalogActivities:
    def __init__(self, sessions: sessionmaker[Session], pay=None, channels=None):
        self.sessions = sessions
        self.pay = pay
        self.channels = channels

    # supplier onboarding
    @activity.defn
    def check_application(self, supplier_id: int) -> CheckResult:
        """Automatic checks: licence format and checksum, required documents, duplicate licence."""
        with self.sessions() as s:
            supplier, profile = s.get(Supplier, supplier_id), s.get(SupplierProfile, supplier_id)
            if supplier is None or profile is None:
                raise business_error("SUPPLIER_NOT_FOUND", f"supplier {supplier_id} has no application")
            problems = application_problems(application_of(profile, supplier.name))
            other = duplicate_licence(s, profile.licence_no, except_supplier=supplier_id)
            if other is not None:
                problems.append(Problem(code="DUPLICATE_LICENCE",
                                        message="this 统一社会信用代码 is already registered by another supplier"))
            return CheckResult(problems=problems)

    @activity.defn
    def escalate_review(self, subject_type: str, subject_id: int, round_: int, level: int) -> None:
        """A review has waited past its SLA: tell support (and record it on the subject)."""
        with self.sessions.begin() as s:
            key = f"{subject_type}:{subject_id}:round{round_}:escalation{level}"
            if not notify(s, role="support", kind="review_overdue", subject_type=subject_type,
                          subject_id=subject_id, key=key,
                          message=f"{subject_type} {subject_id} 审核已超时（第 {level} 次提醒），请尽快处理"):
                return
            model = {"supplier": SupplierProfile, "product": ProductDetail}.get(subject_type)
            target = s.get(model, subject_id) if model is not None else None  # a product edit: no counter
            if target is not None:
                target.escalations += 1

    @activity.defn
    def request_more_info(self, supplier_id: int, round_: int, message: str) -> None:
        with self.sessions.begin() as s:
            supplier = s.get(Supplier, supplier_id, with_for_update=True)
            if supplier.status == "pending_review":
                supplier.status = "more_info"
            profile = s.get(SupplierProfile, supplier_id)
            profile.review_note, profile.updated_at = message, datetime.now(UTC)
            notify(s, user_id=supplier.owner_user_id, kind="supplier_more_info", subject_type="supplier",
                   subject_id=supplier_id, key=f"supplier:{supplier_id}:round{round_}:more_info",
                   message=f"入驻申请需要补充资料：{message}")

    @activity.defn
    def expire_application(self, supplier_id: int) -> bool:
        """No resubmission in time: expired. False if the supplier resubmitted at the last moment."""
        with self.sessions.begin() as s:
            supplier = s.get(Supplier, supplier_id, with_for_update=True)
            if supplier.status == "pending_review":
                return False
            if supplier.status == "more_info":
                supplier.status = "expired"
                s.get(SupplierProfile, supplier_id).open = False
                notify(s, user_id=supplier.owner_user_id, kind="supplier_expired", subject_type="supplier",
                       subject_id=supplier_id, key=f"supplier:{supplier_id}:expired",
                       message="入驻申请未在期限内补充资料，已失效；可重新申请")
            return True

    @activity.defn
    def reject_application(self, supplier_id: int, reason: str, reviewer_user_id: int | None) -> None:
        with self.sessions.begin() as s:
            supplier = s.get(Supplier, supplier_id, with_for_update=True)
            if supplier.status == "rejected":
                return
            supplier.status = "rejected"
            profile = s.get(SupplierProfile, supplier_id)
            profile.open, profile.review_note = False, reason
            profile.reviewed_by_user_id, profile.reviewed_at = reviewer_user_id, datetime.now(UTC)
            notify(s, user_id=supplier.owner_user_id, kind="supplier_rejected", subject_type="supplier",
                   subject_id=supplier_id, key=f"supplier:{supplier_id}:rejected",
                   message=f"入驻申请未通过：{reason}")

    @activity.defn
    def activate_supplier(self, supplier_id: int, decision: ReviewDecision) -> None:
        with self.sessions.begin() as s:
            supplier = s.get(Supplier, supplier_id, with_for_update=True)
            if supplier.status == "active":
                return
            supplier.status, supplier.service_fee_bps = "active", decision.service_fee_bps
            profile = s.get(SupplierProfile, supplier_id)
            profile.review_note = decision.reason or ""
            profile.reviewed_by_user_id, profile.reviewed_at = decision.reviewer_user_id, datetime.now(UTC)
            notify(s, user_id=supplier.owner_user_id, kind="supplier_approved", subject_type="supplier",
                   subject_id=supplier_id, key=f"supplier:{supplier_id}:approved",
                   message=f"入驻申请已通过，技术服务费 {decision.service_fee_bps / 100:.2f}%")

    @activity.defn
    async def add_profit_sharing_receiver(self, supplier_id: int) -> str:
        """Make the supplier a WeChat Pay profit-sharing (分账) receiver: the intent is recorded
        first (keyed by supplier), then the call; adding the same receiver again is harmless."""
        receiver = await asyncio.to_thread(self._receiver_intent, supplier_id)
        if receiver is None:
            return "NO_ACCOUNT"
        if receiver["status"] != "ADDED" and self.pay is not None:
            try:
                await self.pay.add_receiver(receiver["account"], type="MERCHANT_ID",
                                            relation_type="SUPPLIER", name=receiver["name"])
            except PartnerRejected as err:
                raise business_error(f"WECHATPAY_{err.code}", str(err)) from err
            await asyncio.to_thread(self._set_receiver_status, supplier_id, "ADDED")
            return "ADDED"
        return receiver["status"]

    def _receiver_intent(self, supplier_id: int) -> dict | None:
        with self.sessions.begin() as s:
            supplier, profile = s.get(Supplier, supplier_id), s.get(SupplierProfile, supplier_id)
            if profile is None or not profile.wechatpay_mchid:
                return None
            s.execute(insert(ProfitSharingReceiver).values(
                supplier_id=supplier_id, receiver_type="MERCHANT_ID", account=profile.wechatpay_mchid,
                name=supplier.name, relation_type="SUPPLIER", status="PENDING_PARTNER_API",
            ).on_conflict_do_nothing())
            row = s.get(ProfitSharingReceiver, supplier_id)
            return {"account": row.account, "name": row.name, "status": row.status}

    def _set_receiver_status(self, supplier_id: int, status: str) -> None:
        with self.sessions.begin() as s:
            s.get(ProfitSharingReceiver, supplier_id, with_for_update=True).status = status

    # product review
    @activity.defn
    def check_product(self, product_id: int) -> CheckResult:
        with self.sessions() as s:
            product = s.get(Product, product_id)
            if product is None:
                raise business_error("PRODUCT_NOT_FOUND", f"product {product_id} does not exist")
            supplier = s.get(Supplier, product.supplier_id)
            problems = product_problems(submission_of(s, product), service_fee_bps=supplier.service_fee_bps,
                                        approved_categories=approved_categories(s, supplier))
            if supplier.status != "active":
                problems.append(Problem(code="SUPPLIER_NOT_ACTIVE", message=f"supplier is {supplier.status}"))
            return CheckResult(problems=problems)

    @activity.defn
    def reject_product(self, product_id: int, reason: str, reviewer_user_id: int | None) -> None:
        with self.sessions.begin() as s:
            product = s.get(Product, product_id, with_for_update=True)
            if product.status != "pending_review":
                return
            product.status = "rejected"
            detail = s.get(ProductDetail, product_id)
            detail.review_note, detail.reviewed_by_user_id = reason, reviewer_user_id
            detail.reviewed_at = datetime.now(UTC)
            owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == product.supplier_id))
            notify(s, user_id=owner, kind="product_rejected", subject_type="product", subject_id=product_id,
                   key=f"product:{product_id}:rejected", message=f"商品「{product.title}」审核未通过：{reason}")

    @activity.defn
    def list_product(self, product_id: int, decision: ProductDecision) -> None:
        with self.sessions.begin() as s:
            product = s.get(Product, product_id, with_for_update=True)
            if product.status != "pending_review":
                return
            product.status = "listed"
            detail = s.get(ProductDetail, product_id)
            detail.newbie_pick, detail.review_note = decision.newbie_pick, decision.reason or ""
            detail.reviewed_by_user_id, detail.reviewed_at = decision.reviewer_user_id, datetime.now(UTC)
            owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == product.supplier_id))
            notify(s, user_id=owner, kind="product_listed", subject_type="product", subject_id=product_id,
                   key=f"product:{product_id}:listed", message=f"商品「{product.title}」已通过审核并上架")

    @activity.defn
    async def add_to_channels_shop(self, product_id: int) -> str:
        """List the product in the Channels (视频号) shop under out_product_id `cc-product-{id}`:
        intent first, then `/channels/ec/product/add` + listing, then the shop's product id. A retry
        after a call whose answer was lost looks the product up by out_product_id first, so it is
        never added twice (`channels_sync.ensure_shop_product`)."""
        if self.channels is None:
            draft, listing = await asyncio.to_thread(self._channels_intent, product_id)
            return listing["status"]
        from activities.channels_sync import ensure_shop_product

        try:
            await ensure_shop_product(self.sessions, self.channels, product_id, on_sale=True)
        except PartnerRejected as err:
            raise business_error(f"CHANNELS_{err.code}", str(err)) from err
        return "LISTED"

    def _channels_intent(self, product_id: int):
        out_id = f"cc-product-{product_id}"
        with self.sessions.begin() as s:
            s.execute(insert(ChannelsListing).values(
                product_id=product_id, out_product_id=out_id, status="PENDING_PARTNER_API")
                .on_conflict_do_nothing())
            listing = s.get(ChannelsListing, product_id)
            product, detail = s.get(Product, product_id), s.get(ProductDetail, product_id)
            skus = s.scalars(select(Sku).where(Sku.product_id == product_id).order_by(Sku.id)).all()
            images = list(detail.images) if detail and detail.images else []
            draft = ChannelsDraft(
                title=product.title, head_imgs=images or ["https://img.example/placeholder.jpg"],
                out_product_id=out_id,
                skus=[ChannelsSku(out_sku_id=f"cc-sku-{sku.id}", sale_price=sku.price_fen, stock_num=sku.stock,
                                  sku_attrs=[{"attr_key": "规格", "attr_value": sku.spec or "默认"}])
                      for sku in skus])
            return draft, {"status": listing.status, "channels_product_id": listing.channels_product_id}

    def _channels_listed(self, product_id: int, channels_product_id: str) -> None:
        with self.sessions.begin() as s:
            listing = s.get(ChannelsListing, product_id, with_for_update=True)
            listing.status, listing.channels_product_id = "LISTED", channels_product_id

    def all(self) -> list:
        return [self.check_application, self.escalate_review, self.request_more_info,
                self.expire_application, self.reject_application, self.activate_supplier,
                self.add_profit_sharing_receiver, self.check_product, self.reject_product,
                self.list_product, self.add_to_channels_shop]
