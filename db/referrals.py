"""Walks of the referral tree (promoters.referrer_id), written once: up from a promoter (who
referred them, and so on) and down (whom they referred, level by level)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Promoter

# a referral chain is acyclic by construction; this only bounds a walk over corrupt data
MAX_WALK = 100_000


def referral_chain(s: Session, promoter_id: int | None, length: int = MAX_WALK + 1) -> list[Promoter]:
    """The promoter, who referred them, who referred that one, ...: at most `length` promoters,
    nearest first."""
    chain: list[Promoter] = []
    current = promoter_id
    while current is not None and len(chain) < length:
        promoter = s.get(Promoter, current)
        if promoter is None:
            break
        chain.append(promoter)
        current = promoter.referrer_id
    return chain


def upline(s: Session, promoter_id: int) -> list[int]:
    """Who referred `promoter_id`, who referred them, ... (nearest first, never the promoter)."""
    return [p.id for p in referral_chain(s, promoter_id)[1:]]


def downline_levels(s: Session, promoter_id: int, depth: int) -> list[list[int]]:
    """Whom the promoter referred (level 1), whom they referred (level 2), ... `depth` levels."""
    levels: list[list[int]] = []
    level = [promoter_id]
    for _ in range(depth):
        level = list(s.scalars(select(Promoter.id).where(Promoter.referrer_id.in_(level)))) if level else []
        levels.append(level)
    return levels


def downline(s: Session, promoter_id: int, depth: int) -> list[int]:
    """The promoters `depth` referral steps below or closer (never the promoter)."""
    return [p for level in downline_levels(s, promoter_id, depth) for p in level]
