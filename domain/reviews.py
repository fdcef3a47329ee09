"""Product reviews (评价): a buyer reviews each line of an order once, after receiving it; a
review with a prohibited word (the list products are checked against, domain/catalog.py) waits
for support's moderation instead of being shown; the supplier may answer once, in clean words.
Buyers are shown masked: never their openid, phone or address."""

from __future__ import annotations

from enum import StrEnum

from domain.catalog import prohibited_words_in
from domain.order_status import OrderStatus

MAX_TEXT = 500
MAX_IMAGES = 9
# the goods reached the buyer: received (confirmed or automatically) and, later, completed
REVIEWABLE = (OrderStatus.RECEIVED, OrderStatus.COMPLETED)


class ReviewStatus(StrEnum):
    PUBLISHED = "published"
    PENDING_MODERATION = "pending_moderation"
    REJECTED = "rejected"


class ReviewRefused(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def first_status(text: str) -> tuple[ReviewStatus, list[str]]:
    """Published at once, or held for moderation with the words that held it."""
    words = prohibited_words_in(text)
    return (ReviewStatus.PENDING_MODERATION, words) if words else (ReviewStatus.PUBLISHED, [])


def masked_name(display_name: str | None) -> str:
    """What other buyers see of a reviewer: the first character of their name, or 匿名."""
    name = (display_name or "").strip()
    return f"{name[0]}***" if name else "匿名用户"


def average_tenths(ratings: list[int]) -> int | None:
    """The mean rating in tenths of a star (4.5 → 45), rounded half up, in integers."""
    if not ratings:
        return None
    return (sum(ratings) * 20 + len(ratings)) // (2 * len(ratings))
