"""Supplier onboarding rules: the unified social credit code (统一社会信用代码, GB 32100-2015),
which qualification documents each category needs, the application and review-decision types
passed between the API, SupplierOnboardingWorkflow and its activities. No I/O."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator

# Periods with no Settings field yet: the API reads `getattr(settings, name, default)`, so adding
# `supplier_review_sla` / `supplier_more_info_timeout` to Settings takes over without code changes.
DEFAULT_REVIEW_SLA = timedelta(hours=24)
DEFAULT_MORE_INFO_TIMEOUT = timedelta(days=7)
MAX_ESCALATIONS = 3

# --- 统一社会信用代码 (GB 32100-2015) -----------------------------------------------------------
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, S, V, Z
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")


class LicenceError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def uscc_check_char(first17: str) -> str:
    """The 18th character: 31 − (Σ value×weight mod 31), where 31 maps to 0."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def validate_uscc(code: str) -> str:
    """Normalise (strip, upper-case) and validate; returns the code or raises LicenceError."""
    code = (code or "").strip().upper()
    if len(code) != 18:
        raise LicenceError("INVALID_LICENCE_FORMAT", "统一社会信用代码 must be 18 characters")
    if not _USCC_SHAPE.match(code):
        raise LicenceError("INVALID_LICENCE_FORMAT",
                           "统一社会信用代码 uses digits and capital letters except I, O, S, V, Z; "
                           "characters 3–8 are the administrative division code")
    if uscc_check_char(code[:17]) != code[17]:
        raise LicenceError("INVALID_LICENCE_CHECKSUM",
                           "统一社会信用代码 check character does not match (GB 32100-2015)")
    return code


# --- categories and the qualifications they need -----------------------------------------------
DOCUMENT_NAMES: dict[str, str] = {
    "business_licence": "营业执照",
    "operator_id_card": "经营者身份证",
    "food_business_licence": "食品经营许可证",
    "cosmetics_production_licence": "化妆品生产许可证",
    "medical_device_business_licence": "医疗器械经营许可证",
    "publication_business_licence": "出版物经营许可证",
    "alcohol_circulation_filing": "酒类流通备案登记表",
    "brand_authorisation": "品牌授权书",
}

# What every applicant provides, by kind.
BASE_DOCUMENTS: dict[str, tuple[str, ...]] = {
    "enterprise": ("business_licence",),
    "individual": ("business_licence", "operator_id_card"),
}

# Category → documents required to sell in it. Categories absent here are unknown and refused.
CATEGORY_QUALIFICATIONS: dict[str, tuple[str, ...]] = {
    "general": (),
    "apparel": (),
    "home": (),
    "digital": (),
    "agriculture": (),
    "food": ("food_business_licence",),
    "alcohol": ("food_business_licence", "alcohol_circulation_filing"),
    "cosmetics": ("cosmetics_production_licence",),
    "medical_device": ("medical_device_business_licence",),
    "books": ("publication_business_licence",),
    "luxury": ("brand_authorisation",),
}


def required_documents(kind: str, categories: list[str]) -> list[str]:
    needed = list(BASE_DOCUMENTS[kind])
    for category in categories:
        for doc in CATEGORY_QUALIFICATIONS.get(category, ()):
            if doc not in needed:
                needed.append(doc)
    return needed


def missing_documents(kind: str, categories: list[str], provided: list[str]) -> list[str]:
    have = set(provided)
    return [d for d in required_documents(kind, categories) if d not in have]


def categories_needing_no_qualification() -> set[str]:
    return {c for c, docs in CATEGORY_QUALIFICATIONS.items() if not docs}


# --- the application ---------------------------------------------------------------------------
class QualificationDocument(BaseModel):
    kind: str = Field(description=f"one of: {', '.join(DOCUMENT_NAMES)}")
    url: str = Field(pattern=r"^https?://\S{3,500}$", description="uploaded scan or photo")
    number: str | None = Field(default=None, max_length=64, description="licence number printed on it")
    expires_on: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")

    @field_validator("kind")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DOCUMENT_NAMES:
            raise ValueError(f"unknown document kind {v!r}; known: {', '.join(DOCUMENT_NAMES)}")
        return v


class SupplierApplication(BaseModel):
    kind: Literal["individual", "enterprise"] = Field(description="个体工商户 or 企业")
    name: str = Field(min_length=2, max_length=128, description="name on the business licence")
    licence_no: str = Field(description="统一社会信用代码, 18 characters")
    contact_name: str = Field(min_length=1, max_length=32)
    contact_phone: str = Field(pattern=r"^1\d{10}$", description="mainland mobile number")
    categories: list[str] = Field(min_length=1, max_length=20)
    documents: list[QualificationDocument] = Field(default_factory=list, max_length=30)
    wechatpay_mchid: str | None = Field(default=None, pattern=r"^\d{8,12}$",
                                        description="merchant id receiving profit sharing (分账)")

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, v: list[str]) -> list[str]:
        unknown = [c for c in v if c not in CATEGORY_QUALIFICATIONS]
        if unknown:
            raise ValueError(f"unknown categories {unknown}; known: {', '.join(CATEGORY_QUALIFICATIONS)}")
        return list(dict.fromkeys(v))


class Problem(BaseModel):
    code: str
    message: str


def application_problems(app: SupplierApplication) -> list[Problem]:
    """Everything wrong with an application that needs no database: format, checksum, documents."""
    problems: list[Problem] = []
    try:
        validate_uscc(app.licence_no)
    except LicenceError as err:
        problems.append(Problem(code=err.code, message=str(err)))
    missing = missing_documents(app.kind, app.categories, [d.kind for d in app.documents])
    if missing:
        names = "、".join(f"{DOCUMENT_NAMES[m]} ({m})" for m in missing)
        problems.append(Problem(code="MISSING_DOCUMENTS", message=f"missing qualification documents: {names}"))
    return problems


# --- review --------------------------------------------------------------------------------------
class OnboardingStatus(StrEnum):
    CHECKING = "CHECKING"
    PENDING_REVIEW = "PENDING_REVIEW"
    MORE_INFO = "MORE_INFO"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


# Supplier.status in the database, per workflow status.
DB_STATUS = {
    OnboardingStatus.CHECKING: "pending_review",
    OnboardingStatus.PENDING_REVIEW: "pending_review",
    OnboardingStatus.MORE_INFO: "more_info",
    OnboardingStatus.APPROVED: "active",
    OnboardingStatus.REJECTED: "rejected",
    OnboardingStatus.EXPIRED: "expired",
}


class ReviewDecision(BaseModel):
    action: Literal["approve", "reject", "more_info"]
    reviewer_user_id: int
    service_fee_bps: int | None = Field(default=None, description="approve: 1%–5% as basis points")
    reason: str | None = Field(default=None, max_length=500,
                               description="reject: why; more_info: what to provide")


def decision_problem(d: ReviewDecision, fee_min: int, fee_max: int) -> str | None:
    """Why a decision is invalid as such (None if it is fine)."""
    if d.action == "approve":
        if d.service_fee_bps is None or not fee_min <= d.service_fee_bps <= fee_max:
            return f"approval needs a service fee between {fee_min} and {fee_max} bps"
    elif not (d.reason or "").strip():
        return f"{d.action} needs a reason the supplier can act on"
    return None


class ReviewTimings(BaseModel):
    review_sla: timedelta
    more_info_timeout: timedelta = DEFAULT_MORE_INFO_TIMEOUT
    max_escalations: int = MAX_ESCALATIONS


class CheckResult(BaseModel):
    problems: list[Problem] = []


class OnboardingProgress(BaseModel):
    supplier_id: int
    status: OnboardingStatus
    round: int = 0
    problems: list[Problem] = []
    escalations: int = 0
    decision: ReviewDecision | None = None
    updated_at: datetime | None = None
