"""Product reviews (评价, domain/reviews.py): buyers review what they received, support moderates
what the prohibited words held back, suppliers answer once; everyone reads a product's
published reviews with its rating, the reviewers masked."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select

from activities import reviews
from api.auth import PLATFORM_STAFF, Principal, require_roles, signed_in
from api.deps import sessions_of
from api.errors import ApiError
from db.models import User
from db.review_models import ProductReview
from domain.reviews import MAX_IMAGES, MAX_TEXT, ReviewRefused, ReviewStatus, average_tenths, masked_name

router = APIRouter(tags=["reviews"])
BUYERS = ("buyer", "promoter")
ID = dict(ge=1, le=2**31 - 1)
ORDER_NO = r"^[0-9A-Za-z_\-|*]{6,32}$"
REFUSED_STATUS = {"ORDER_NOT_FOUND": 404, "REVIEW_NOT_FOUND": 404, "LINE_NOT_FOUND": 422, "PROHIBITED_WORDS": 422}


class ReviewBody(BaseModel):
    line_id: int = Field(**ID, description="the order line reviewed (each once)")
    rating: int = Field(ge=1, le=5)
    text: str = Field(default="", max_length=MAX_TEXT)
    images: list[str] = Field(default_factory=list, max_length=MAX_IMAGES)

    @field_validator("images")
    @classmethod
    def _https(cls, urls: list[str]) -> list[str]:
        if any(not u.startswith("https://") or len(u) > 500 for u in urls):
            raise ValueError("images are https URLs of at most 500 characters")
        return urls


class ReviewOut(BaseModel):
    id: int
    product_id: int
    rating: int
    text: str
    images: list[str]
    reviewer: str = Field(description="masked: the first character of the buyer's name")
    reply: str | None
    replied_at: datetime | None
    created_at: datetime


class MyReviewOut(ReviewOut):
    order_no: str
    line_id: int
    status: ReviewStatus
    moderation_note: str | None


class ProductReviewsOut(BaseModel):
    product_id: int
    count: int = Field(description="published reviews")
    average_tenths: int | None = Field(description="the mean rating in tenths of a star (45 = 4.5)")
    reviews: list[ReviewOut]


class ModerationBody(BaseModel):
    action: Literal["approve", "reject"]
    reason: str = Field(min_length=2, max_length=500)


class ReplyBody(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT)


def _refused(err: ReviewRefused) -> ApiError:
    return ApiError(REFUSED_STATUS.get(err.code, 409), err.code, str(err))


def _name_of(s, user_id: int) -> str | None:
    return s.scalar(select(User.display_name).where(User.id == user_id))


def _out(review: ProductReview, display_name: str | None, model=ReviewOut):
    extra = {} if model is ReviewOut else {"order_no": review.order_no, "line_id": review.order_line_id,
                                           "status": review.status, "moderation_note": review.moderation_note}
    return model(id=review.id, product_id=review.product_id, rating=review.rating, text=review.text,
                 images=review.images, reviewer=masked_name(display_name), reply=review.reply,
                 replied_at=review.replied_at, created_at=review.created_at, **extra)


@router.post("/orders/{order_no}/reviews", status_code=201, response_model=MyReviewOut,
             summary="Review a line of my order once it was received: published, or held for moderation",
             responses={409: {"description": "NOT_REVIEWABLE, ALREADY_REVIEWED"}})
async def write(body: ReviewBody, request: Request, order_no: str = Path(pattern=ORDER_NO),
                principal: Principal = Depends(require_roles(*BUYERS))) -> MyReviewOut:
    def save() -> MyReviewOut:
        with sessions_of(request).begin() as s:
            try:
                review = reviews.write_review(s, buyer_user_id=principal.user_id, order_no=order_no,
                                              line_id=body.line_id, rating=body.rating, text=body.text,
                                              images=body.images)
            except ReviewRefused as err:
                raise _refused(err) from err
            name = _name_of(s, principal.user_id)
            return _out(review, name, MyReviewOut)

    return await run_in_threadpool(save)


@router.get("/products/{product_id}/reviews", response_model=ProductReviewsOut,
            summary="A product's published reviews, newest first, with its rating")
def product_reviews(request: Request, product_id: int = Path(**ID), limit: int = Query(default=20, ge=1, le=100),
                    offset: int = Query(default=0, ge=0, le=100_000),
                    _: Principal = Depends(signed_in)) -> ProductReviewsOut:
    published = (ProductReview.product_id == product_id, ProductReview.status == ReviewStatus.PUBLISHED)
    with sessions_of(request)() as s:
        ratings = list(s.scalars(select(ProductReview.rating).where(*published)))
        rows = s.execute(select(ProductReview, User.display_name).join(User, User.id == ProductReview.buyer_user_id)
                         .where(*published).order_by(ProductReview.created_at.desc(), ProductReview.id.desc())
                         .limit(limit).offset(offset)).all()
        return ProductReviewsOut(product_id=product_id, count=len(ratings), average_tenths=average_tenths(ratings),
                                 reviews=[_out(r, name) for r, name in rows])


@router.get("/reviews/mine", response_model=list[MyReviewOut], summary="My reviews in every status")
def mine(request: Request, limit: int = Query(default=20, ge=1, le=100), offset: int = Query(default=0, ge=0, le=100_000),
         principal: Principal = Depends(require_roles(*BUYERS))) -> list[MyReviewOut]:
    with sessions_of(request)() as s:
        name = _name_of(s, principal.user_id)
        rows = s.scalars(select(ProductReview).where(ProductReview.buyer_user_id == principal.user_id)
                         .order_by(ProductReview.created_at.desc(), ProductReview.id.desc()).limit(limit).offset(offset))
        return [_out(r, name, MyReviewOut) for r in rows]


@router.get("/reviews/moderation", response_model=list[MyReviewOut],
            summary="Reviews held for moderation, oldest first (support, operators)")
def moderation_queue(request: Request, limit: int = Query(default=50, ge=1, le=200),
                     offset: int = Query(default=0, ge=0, le=100_000),
                     _: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> list[MyReviewOut]:
    with sessions_of(request)() as s:
        rows = s.execute(select(ProductReview, User.display_name).join(User, User.id == ProductReview.buyer_user_id)
                         .where(ProductReview.status == ReviewStatus.PENDING_MODERATION)
                         .order_by(ProductReview.created_at, ProductReview.id).limit(limit).offset(offset)).all()
        return [_out(r, name, MyReviewOut) for r, name in rows]


@router.post("/reviews/{review_id}/moderation", response_model=MyReviewOut,
             summary="Publish or reject a review held for moderation (support, operators)",
             responses={409: {"description": "NOT_AWAITING_MODERATION"}})
def moderate(body: ModerationBody, request: Request, review_id: int = Path(**ID),
             principal: Principal = Depends(require_roles(*PLATFORM_STAFF))) -> MyReviewOut:
    with sessions_of(request).begin() as s:
        try:
            review = reviews.moderate(s, review_id=review_id, approve=body.action == "approve", reason=body.reason,
                                      staff_user_id=principal.user_id)
        except ReviewRefused as err:
            raise _refused(err) from err
        return _out(review, _name_of(s, review.buyer_user_id), MyReviewOut)


@router.post("/reviews/{review_id}/reply", response_model=ReviewOut,
             summary="Answer a published review of my goods, once (supplier)",
             responses={409: {"description": "ALREADY_REPLIED"}})
def answer(body: ReplyBody, request: Request, review_id: int = Path(**ID),
           principal: Principal = Depends(require_roles("supplier"))) -> ReviewOut:
    """422 `PROHIBITED_WORDS` when the answer has a word products may not carry either."""
    with sessions_of(request).begin() as s:
        try:
            review = reviews.reply(s, review_id=review_id, supplier_user_id=principal.user_id, text=body.text)
        except ReviewRefused as err:
            raise _refused(err) from err
        return _out(review, _name_of(s, review.buyer_user_id))

