"""Commission policy versions in the database. Version 1 is the policy the settings give
(validated at startup); operators add versions, never edit one, and never deeper than the
ceiling COMMISSION_TIERS in force then. An order records the version in force when it was paid.
`self_purchase_commission` is a column of old versions only: it is always stored false and never
read (nobody earns on a purchase made inside the seller's chain)."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from db.promoter_models import CommissionPolicyRow
from domain.commission import CommissionPolicy, PolicyVersion, policy_from_rates

POLICY_LOCK = 7_200_001  # advisory lock id serialising policy changes


def _version(row: CommissionPolicyRow) -> PolicyVersion:
    return PolicyVersion(row.version, CommissionPolicy(tiers=row.tiers, tier_rates_bps=tuple(row.tier_rates_bps)))


def ensure_initial(session: Session, default: CommissionPolicy) -> None:
    session.execute(insert(CommissionPolicyRow).values(
        version=1, tiers=default.tiers, tier_rates_bps=list(default.tier_rates_bps[: default.tiers]),
        self_purchase_commission=False, note="from settings",
    ).on_conflict_do_nothing(index_elements=["version"]))


def current_policy(session: Session, default: CommissionPolicy) -> PolicyVersion:
    row = session.scalar(select(CommissionPolicyRow).order_by(CommissionPolicyRow.version.desc()).limit(1))
    if row is None:
        ensure_initial(session, default)
        row = session.get(CommissionPolicyRow, 1)
    return _version(row)


def policy_version(session: Session, version: int) -> PolicyVersion | None:
    row = session.get(CommissionPolicyRow, version)
    return _version(row) if row else None


def history(session: Session, default: CommissionPolicy) -> list[tuple[PolicyVersion, CommissionPolicyRow]]:
    current_policy(session, default)
    rows = session.scalars(select(CommissionPolicyRow).order_by(CommissionPolicyRow.version)).all()
    return [(_version(r), r) for r in rows]


def set_policy(session: Session, default: CommissionPolicy, *, tiers: int, tier_rates_bps: list[int],
               ceiling: int, by_user_id: int | None, note: str = "") -> PolicyVersion:
    """Add a new version. PolicyRefused (nothing written) for more tiers than the ceiling
    (COMMISSION_TIERS, at most 3), a tier without a rate above 0, or rates over 100%."""
    policy = policy_from_rates(tiers, tier_rates_bps, ceiling)
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": POLICY_LOCK})
    current_policy(session, default)
    version = (session.scalar(select(func.max(CommissionPolicyRow.version))) or 0) + 1
    session.add(CommissionPolicyRow(version=version, tiers=policy.tiers,
                                    tier_rates_bps=list(policy.tier_rates_bps),
                                    self_purchase_commission=False,
                                    set_by_user_id=by_user_id, note=note))
    session.flush()
    return PolicyVersion(version, policy)
