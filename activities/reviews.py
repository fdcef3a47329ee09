"""Reviews (rules in domain/reviews.py), written in the API's request: one per order line, held
for moderation when a prohibited word is in it, the supplier's one answer."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from activities.catalog import notify
from db.models import Order, OrderLine, Supplier
from db.review_models import ProductReview
from domain.catalog import prohibited_words_in
from domain.reviews import REVIEWABLE, ReviewRefused, ReviewStatus, first_status


def write_review(s: Session, *, buyer_user_id: int, order_no: str, line_id: int, rating: int, text: str,
                 images: list[str]) -> ProductReview:
    order = s.get(Order, order_no)
    if order is None or order.buyer_user_id != buyer_user_id:
        raise ReviewRefused("ORDER_NOT_FOUND", f"order {order_no} not found")
    line = s.get(OrderLine, line_id, with_for_update=True)
    if line is None or line.order_no != order_no:
        raise ReviewRefused("LINE_NOT_FOUND", f"line {line_id} is not part of order {order_no}")
    if order.status not in REVIEWABLE:
        raise ReviewRefused("NOT_REVIEWABLE", f"order {order_no} is {order.status}: goods are reviewed once received")
    if line.refund_claimed_quantity >= line.quantity:
        raise ReviewRefused("NOT_REVIEWABLE", f"line {line_id} was refunded in full")
    if s.scalar(select(ProductReview.id).where(ProductReview.order_line_id == line_id)) is not None:
        raise ReviewRefused("ALREADY_REVIEWED", f"line {line_id} has a review already")
    status, words = first_status(text)
    review = ProductReview(order_line_id=line.id, order_no=order_no, product_id=line.product_id,
                           supplier_id=line.supplier_id, buyer_user_id=buyer_user_id, rating=rating, text=text,
                           images=images, status=status,
                           moderation_note=f"held for prohibited words: {'、'.join(words)}" if words else None)
    s.add(review)
    s.flush()
    if status == ReviewStatus.PUBLISHED:
        _tell_supplier(s, review, f"「{line.title}」收到 {rating} 星评价")
    return review


def moderate(s: Session, *, review_id: int, approve: bool, reason: str, staff_user_id: int) -> ProductReview:
    review = s.get(ProductReview, review_id, with_for_update=True)
    if review is None:
        raise ReviewRefused("REVIEW_NOT_FOUND", f"review {review_id} not found")
    if review.status != ReviewStatus.PENDING_MODERATION:
        raise ReviewRefused("NOT_AWAITING_MODERATION", f"review {review_id} is {review.status}")
    review.status = ReviewStatus.PUBLISHED if approve else ReviewStatus.REJECTED
    review.moderation_note, review.moderated_by_user_id = reason, staff_user_id
    if approve:
        _tell_supplier(s, review, f"订单 {review.order_no} 的评价已审核发布")
    else:
        notify(s, user_id=review.buyer_user_id, kind="review_rejected", subject_type="review", subject_id=review.id,
               key=f"review:{review.id}:rejected", message=f"你的评价未通过审核：{reason}")
    return review


def reply(s: Session, *, review_id: int, supplier_user_id: int, text: str) -> ProductReview:
    review = s.get(ProductReview, review_id, with_for_update=True)
    supplier_id = s.scalar(select(Supplier.id).where(Supplier.owner_user_id == supplier_user_id))
    if review is None or review.supplier_id != supplier_id or review.status != ReviewStatus.PUBLISHED:
        raise ReviewRefused("REVIEW_NOT_FOUND", f"review {review_id} not found")
    if review.reply is not None:
        raise ReviewRefused("ALREADY_REPLIED", f"review {review_id} has your answer already")
    words = prohibited_words_in(text)
    if words:
        raise ReviewRefused("PROHIBITED_WORDS", f"the answer has prohibited words: {'、'.join(words)}")
    review.reply, review.replied_at = text, datetime.now(UTC)
    notify(s, user_id=review.buyer_user_id, kind="review_replied", subject_type="review", subject_id=review.id,
           key=f"review:{review.id}:replied", message="商家回复了你的评价")
    return review


def _tell_supplier(s: Session, review: ProductReview, message: str) -> None:
    owner = s.scalar(select(Supplier.owner_user_id).where(Supplier.id == review.supplier_id))
    notify(s, user_id=owner, kind="review_published", subject_type="review", subject_id=review.id,
           key=f"review:{review.id}:published", message=message)
