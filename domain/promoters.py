"""Promoter rules (DESIGN.md pay rules): becoming a promoter is free — agreement, real-name
check, window binding — and the referral relation is first-touch, permanent, never self, never
a cycle, never placed under someone who did not refer you (no spillover)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import date
from enum import StrEnum


class PromoterStatus(StrEnum):
    ACTIVE = "active"    # earns commission on new sales
    PAUSED = "paused"    # failed an assessment: no NEW commission; earned money untouched
    LAPSED = "lapsed"    # two failed cycles in a row; position (referral relation) kept
    LEFT = "left"


EARNING_STATUSES = frozenset({PromoterStatus.ACTIVE})
REVIVABLE_STATUSES = frozenset({PromoterStatus.PAUSED, PromoterStatus.LAPSED})
MIN_AGE = 18


# --- real-name check: GB 11643-1999 citizen identity number ----------------------------------
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"
ID_PATTERN = re.compile(r"^[1-9]\d{16}[\dX]$")


class InvalidIdentity(ValueError):
    pass


def id_check_char(first17: str) -> str:
    return ID_CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def validate_id_number(raw: str, today: date) -> str:
    """The normalised 18-character number, or InvalidIdentity saying what is wrong."""
    number = raw.strip().upper()
    if not ID_PATTERN.match(number):
        raise InvalidIdentity("an ID number is 18 characters: 17 digits and a check digit (0-9 or X)")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as err:
        raise InvalidIdentity("the birth date inside the ID number is not a real date") from err
    if born > today or born.year < 1900:
        raise InvalidIdentity("the birth date inside the ID number is not plausible")
    if id_check_char(number[:17]) != number[17]:
        raise InvalidIdentity("the ID number's check digit does not match (GB 11643)")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < MIN_AGE:
        raise InvalidIdentity(f"promoters must be at least {MIN_AGE} years old")
    return number


NAME_PATTERN = re.compile(r"^[\u4e00-\u9fff·A-Za-z ]{2,30}$")


def validate_real_name(raw: str) -> str:
    name = raw.strip()
    if not NAME_PATTERN.match(name):
        raise InvalidIdentity("the real name must be 2-30 Chinese or Latin letters (· allowed)")
    return name


def mask_id_number(number: str) -> str:
    """Only what a person needs to recognise their own number: 110***********123X."""
    return f"{number[:3]}{'*' * 11}{number[-4:]}"


def mask_name(name: str) -> str:
    return name[0] + "*" * (len(name) - 1) if len(name) > 1 else name


def identity_hash(number: str, key: str) -> str:
    """Keyed, so the stored hash cannot be reversed by enumerating the small ID space."""
    return hmac.new(f"chuchuang:id:{key}".encode(), number.encode(), hashlib.sha256).hexdigest()


def real_name_hash(name: str, key: str) -> str:
    """The full real name, keyed (identity-hash key): what a payout's name is compared with,
    never the masked form (王*明 matches every 王 with a two-character given name)."""
    normal = " ".join(name.split())
    return hmac.new(f"chuchuang:name:{key}".encode(), normal.encode(), hashlib.sha256).hexdigest()


def hashes_under(value: str, keys: tuple[str, ...], hasher=identity_hash) -> list[str]:
    """The value's hash under each key of a key ring (the one in force first)."""
    return [hasher(value, key) for key in keys]


# --- referral -----------------------------------------------------------------------------
CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud and typed by hand
CODE_PATTERN = re.compile(rf"^[{CODE_ALPHABET}]{{8}}$")


def new_referral_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))


def normalise_code(raw: str) -> str:
    return raw.strip().upper()


class BindingRefused(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_referral_binding(promoter_id: int, current_referrer_id: int | None, referrer_id: int,
                           referrer_upline: list[int]) -> bool:
    """May `promoter_id` be bound under `referrer_id`, whose own upline (nearest first) is
    `referrer_upline`? Returns False when exactly this binding already exists (a repeat)."""
    if current_referrer_id is not None:
        if current_referrer_id == referrer_id:
            return False
        raise BindingRefused("ALREADY_BOUND", "the referral relation is permanent: the first "
                             "promoter who referred you stays your referrer")
    if referrer_id == promoter_id:
        raise BindingRefused("SELF_REFERRAL", "you cannot use your own referral code")
    if promoter_id in referrer_upline:
        raise BindingRefused("REFERRAL_CYCLE", "that promoter was referred (directly or "
                             "indirectly) by you; a referral chain cannot loop")
    return True


def share_scene(window_id: int, code: str) -> str:
    """The mini-program code `scene` (≤ 32 visible characters)."""
    return f"w={window_id}&r={code}"
