"""Product and window rules: prohibited words (广告法 absolute and medical claims), what a SKU
may charge and pay in commission, stock thresholds, window states, and the types passed between
the API, ProductReviewWorkflow and its activities. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from domain.money import BPS_WHOLE, apply_bps
from domain.suppliers import CATEGORY_QUALIFICATIONS, Problem

# No Settings field yet: read via `getattr(settings, "low_stock_threshold", LOW_STOCK_THRESHOLD)`.
LOW_STOCK_THRESHOLD = 5
DEFAULT_PRODUCT_REVIEW_SLA = timedelta(hours=24)
MAX_BATCH = 50

# 广告法 §9 absolute terms and §17 medical claims, plus common platform-banned phrasing.
PROHIBITED_WORDS: tuple[str, ...] = (
    "国家级", "世界级", "最高级", "最佳", "最好", "最低价", "最便宜", "第一品牌", "全网第一", "销量第一",
    "No.1", "顶级", "极品", "独一无二", "绝无仅有", "史无前例", "万能", "100%有效", "百分百有效",
    "根治", "包治百病", "特效药", "无副作用", "药到病除", "治愈", "祖传秘方", "假一赔万", "永久有效",
)


def prohibited_words_in(*texts: str | None) -> list[str]:
    joined = "\n".join(t for t in texts if t).lower()
    return [w for w in PROHIBITED_WORDS if w.lower() in joined]


def sku_commission_fen(price_fen: int, commission_bps: int | None, commission_fixed_fen: int | None) -> int:
    """What one unit pays in commission at list price."""
    if commission_fixed_fen is not None:
        return commission_fixed_fen
    if commission_bps is not None:
        return apply_bps(price_fen, commission_bps)
    return 0


def max_commission_fen(price_fen: int, service_fee_bps: int) -> int:
    """Commission may never exceed the price less the platform's service fee."""
    return price_fen - apply_bps(price_fen, service_fee_bps)


def effective_commission_bps(price_fen: int, commission_bps: int | None, commission_fixed_fen: int | None) -> int:
    if price_fen <= 0:
        return 0
    return sku_commission_fen(price_fen, commission_bps, commission_fixed_fen) * BPS_WHOLE // price_fen


class SkuInput(BaseModel):
    spec: str = Field(default="", max_length=120, description="e.g. 357g 饼 / 红色 XL")
    price_fen: int = Field(gt=0, le=100_000_000, description="price in fen, > 0")
    stock: int = Field(ge=0, le=10_000_000)
    commission_bps: int | None = Field(default=None, ge=0, le=BPS_WHOLE)
    commission_fixed_fen: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_commission_rule(self) -> SkuInput:
        if self.commission_bps is not None and self.commission_fixed_fen is not None:
            raise ValueError("give commission_bps or commission_fixed_fen, not both")
        return self


class PromoterMaterial(BaseModel):
    kind: Literal["text", "image", "video", "link"]
    content: str = Field(min_length=1, max_length=2000, description="copy text or a URL")


class ProductSubmission(BaseModel):
    title: str = Field(min_length=2, max_length=200)
    category: str
    description: str = Field(default="", max_length=5000)
    images: list[str] = Field(min_length=1, max_length=20, description="image URLs, first is the cover")
    video_url: str | None = Field(default=None, pattern=r"^https?://\S{3,500}$")
    materials: list[PromoterMaterial] = Field(default_factory=list, max_length=30,
                                              description="copy and media for promoters (带货素材)")
    skus: list[SkuInput] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _urls(self) -> ProductSubmission:
        bad = [u for u in self.images if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"images must be http(s) URLs: {bad[:3]}")
        return self


def content_problems(p: ProductSubmission) -> list[Problem]:
    """The checks on what a product says (title, description, promoters' copy): the ones a
    content edit of a listed product goes through again."""
    words = prohibited_words_in(p.title, p.description, *[m.content for m in p.materials if m.kind == "text"])
    return [Problem(code="PROHIBITED_WORDS", message=f"prohibited words: {'、'.join(words)}")] if words else []


def product_problems(p: ProductSubmission, *, service_fee_bps: int, approved_categories: set[str]) -> list[Problem]:
    """Every automatic check on a product: words, category qualification, price, commission."""
    problems = content_problems(p)
    if p.category not in CATEGORY_QUALIFICATIONS:
        problems.append(Problem(code="UNKNOWN_CATEGORY", message=f"unknown category {p.category!r}"))
    elif p.category not in approved_categories:
        problems.append(Problem(code="CATEGORY_NOT_QUALIFIED",
                                message=f"supplier is not qualified to sell in category {p.category!r}"))
    for i, sku in enumerate(p.skus):
        if sku.price_fen <= 0:
            problems.append(Problem(code="INVALID_PRICE", message=f"skus[{i}]: price must be > 0"))
            continue
        commission = sku_commission_fen(sku.price_fen, sku.commission_bps, sku.commission_fixed_fen)
        ceiling = max_commission_fen(sku.price_fen, service_fee_bps)
        if commission > ceiling:
            problems.append(Problem(
                code="COMMISSION_TOO_HIGH",
                message=f"skus[{i}]: commission {commission} fen exceeds price less platform fee ({ceiling} fen)"))
    return problems


class ProductStatus(StrEnum):
    CHECKING = "CHECKING"
    PENDING_REVIEW = "PENDING_REVIEW"
    LISTED = "LISTED"
    REJECTED = "REJECTED"


class ProductDecision(BaseModel):
    action: Literal["approve", "reject"]
    reviewer_user_id: int
    reason: str | None = Field(default=None, max_length=500)
    newbie_pick: bool = Field(default=False, description="feature as 新手优选 in the selection centre")


def product_decision_problem(d: ProductDecision) -> str | None:
    if d.action == "reject" and not (d.reason or "").strip():
        return "reject needs a reason the supplier can act on"
    return None


class ProductReviewInput(BaseModel):
    product_id: int
    supplier_id: int
    review_sla: timedelta
    max_escalations: int = 3
    edit_id: int | None = None  # a listed product's content edit (product_edits), reviewed on its own


def edit_workflow_id(product_id: int, edit_id: int) -> str:
    return f"product-{product_id}-edit-{edit_id}"


class ProductProgress(BaseModel):
    product_id: int
    status: ProductStatus
    problems: list[Problem] = []
    escalations: int = 0
    decision: ProductDecision | None = None
    channels: str | None = None
    updated_at: datetime | None = None


# --- windows -------------------------------------------------------------------------------------
class WindowItemStatus(StrEnum):
    MOUNTED = "mounted"      # shown in the window
    HIDDEN = "hidden"        # the promoter hid it
    OFF_SALE = "off_sale"    # taken down by the platform: sold out or supplier suspended


OFF_SOLD_OUT = "sold_out"
OFF_SUPPLIER_SUSPENDED = "supplier_suspended"
OFF_DELISTED = "delisted"
OFF_VIOLATION = "violation"          # the Channels shop found the product in violation (违规下架 / 封禁)
OFF_PRODUCT_SUSPENDED = "product_suspended"  # support took this one product off sale
OFF_WITHDRAWN = "withdrawn"          # its supplier took it off sale (下架); back only when they relist it
# the product status a supplier's own 下架 leaves (restocking or reinstatements never relist it)
PRODUCT_WITHDRAWN = "withdrawn"
# A product support suspended has this status of its own, so lifting a supplier's suspension
# (status "suspended") or restocking never brings it back; only reinstating the product does.
PRODUCT_SUSPENDED = "product_suspended"
SUSPENDABLE_PRODUCT_STATUSES = ("listed", "suspended", "violation", "delisted", "withdrawn")
