"""Content edits of a listed product (title, description, images): kept apart while support
reviews them, the product staying on sale as it was; applied on approval, dropped with the
reason on rejection (ProductReviewWorkflow's edit path)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity

from activities import channels_outbox
from activities.catalog import notify, submission_of
from activities.errors import business_error
from db.catalog_models import ProductDetail
from db.models import Product, Supplier
from db.review_models import ProductEdit
from domain.catalog import ProductDecision, content_problems
from domain.suppliers import CheckResult

EDITABLE = ("listed", "withdrawn")  # on sale, or taken off sale by the supplier


def propose_edit(s: Session, *, product_id: int, supplier_user_id: int, title: str | None,
                 description: str | None, images: list[str] | None) -> ProductEdit:
    """The supplier's change, kept for review; one at a time per product."""
    product = s.get(Product, product_id, with_for_update=True)
    owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == product.supplier_id)) if product else None
    if product is None or owner != supplier_user_id:
        raise business_error("PRODUCT_NOT_FOUND", f"product {product_id} not found")
    if product.status not in EDITABLE:
        raise business_error("NOT_EDITABLE", f"product {product_id} is {product.status}: only a listed product's "
                                             "content is edited (a rejected one is submitted again)")
    if s.scalar(select(ProductEdit.id).where(ProductEdit.product_id == product_id,
                                             ProductEdit.status == "pending")) is not None:
        raise business_error("EDIT_PENDING", f"product {product_id} has an edit waiting for review")
    edit = ProductEdit(product_id=product_id, title=title, description=description, images=images)
    s.add(edit)
    s.flush()
    return edit


class ProductEditActivities:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    @activity.defn
    def check_product_edit(self, edit_id: int) -> CheckResult:
        """The content checks of a new product, on the product as it would be after the edit
        (category, price and commission are not what an edit changes)."""
        with self.sessions() as s:
            edit = s.get(ProductEdit, edit_id)
            product = s.get(Product, edit.product_id)
            changed = {k: v for k, v in (("title", edit.title), ("description", edit.description),
                                         ("images", edit.images)) if v is not None}
            return CheckResult(problems=content_problems(submission_of(s, product).model_copy(update=changed)))

    @activity.defn
    def apply_product_edit(self, edit_id: int, decision: ProductDecision) -> None:
        with self.sessions.begin() as s:
            edit = s.get(ProductEdit, edit_id, with_for_update=True)
            if edit.status != "pending":
                return
            product = s.get(Product, edit.product_id, with_for_update=True)
            detail = s.get(ProductDetail, product.id)
            if detail is None:  # a product made without its details (seeded): they start now
                detail = ProductDetail(product_id=product.id, description="", images=[], materials=[])
                s.add(detail)
            if edit.title is not None:
                product.title = edit.title
            if edit.description is not None:
                detail.description = edit.description
            if edit.images is not None:
                detail.images = edit.images
            channels_outbox.product_changed(s, product.id, "product_edited")  # the shop's copy follows
            self._decided(s, edit, "approved", decision.reason or "", decision.reviewer_user_id)
            self._tell(s, product, edit, f"商品「{product.title}」的修改已通过审核并生效")

    @activity.defn
    def reject_product_edit(self, edit_id: int, reason: str, reviewer_user_id: int | None) -> None:
        with self.sessions.begin() as s:
            edit = s.get(ProductEdit, edit_id, with_for_update=True)
            if edit.status != "pending":
                return
            self._decided(s, edit, "rejected", reason, reviewer_user_id)
            product = s.get(Product, edit.product_id)
            self._tell(s, product, edit, f"商品「{product.title}」的修改未通过审核，原内容继续在售：{reason}")

    @staticmethod
    def _decided(s: Session, edit: ProductEdit, status: str, reason: str, reviewer_user_id: int | None) -> None:
        edit.status, edit.reason, edit.reviewed_by_user_id = status, reason, reviewer_user_id
        edit.decided_at = datetime.now(UTC)

    @staticmethod
    def _tell(s: Session, product: Product, edit: ProductEdit, message: str) -> None:
        owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == product.supplier_id))
        notify(s, user_id=owner, kind=f"product_edit_{edit.status}", subject_type="product", subject_id=product.id,
               key=f"product_edit:{edit.id}:{edit.status}", message=message)

    def all(self) -> list:
        return [self.check_product_edit, self.apply_product_edit, self.reject_product_edit]
