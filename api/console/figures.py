"""Reading the dashboards' figures: rows of `rollup_facts` only (a few index lookups per
request, whatever the number of orders), with the derived figures, period-over-period change
and alerts of domain/dashboards.py."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.console_models import RollupFact
from domain.dashboards import (
    DERIVED,
    LABELS,
    MEASURES,
    Dim,
    Grain,
    alerts,
    change_bps,
    derived,
    last_periods,
    period_start,
)


def today(tz: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(tz)).date()


def _values(r: RollupFact | None) -> dict:
    return {m: (getattr(r, m) if r is not None else 0) for m in MEASURES}


def series(s: Session, dim: Dim, key: str, grain: Grain, count: int, until: date) -> list[dict]:
    """The last `count` periods up to `until`'s, oldest first, zero where nothing happened."""
    starts = last_periods(until, grain, count)
    found = {r.period_start: r for r in s.scalars(select(RollupFact).where(
        RollupFact.dim == dim.value, RollupFact.key == key, RollupFact.grain == grain.value,
        RollupFact.period_start.in_(starts)))}
    out = []
    for start in starts:
        row = {"period_start": start.isoformat()} | _values(found.get(start))
        out.append(row | derived(row))
    return out


def overview(s: Session, dim: Dim, key: str, grain: Grain, count: int, until: date, alert_bps: int) -> dict:
    rows = series(s, dim, key, grain, max(count, 2), until)
    current, previous = rows[-1], rows[-2]
    return {
        "grain": grain.value, "dim": dim.value, "key": key,
        "series": rows[-count:] if count >= 1 else rows,
        "current": current, "previous": previous,
        "change_bps": {m: change_bps(current[m], previous[m]) for m in (*MEASURES, *DERIVED)},
        "alerts": [a.model_dump() for a in alerts(current, alert_bps)] if dim == Dim.ALL else [],
        "repeat_rate_alert_bps": alert_bps,
    }


def breakdown(s: Session, dim: Dim, grain: Grain, start: date, *, supplier_id: int | None = None,
              order_by: str = "gmv_fen", limit: int = 200) -> list[dict]:
    start = period_start(start, grain)
    query = select(RollupFact).where(RollupFact.grain == grain.value, RollupFact.period_start == start,
                                     RollupFact.dim == dim.value)
    if supplier_id is not None:
        query = query.where(RollupFact.supplier_id == supplier_id)
    column = getattr(RollupFact, order_by if order_by in MEASURES else "gmv_fen")
    rows = s.scalars(query.order_by(column.desc(), RollupFact.key).limit(limit))
    out = []
    for r in rows:
        row = {"key": r.key, "label": r.label} | _values(r)
        out.append(row | derived(row))
    return out


def to_csv(rows: list[dict], first: tuple[str, ...]) -> str:
    """A table as CSV (UTF-8 with BOM, so spreadsheet programs read the Chinese headers)."""
    columns = [*first, *MEASURES, *DERIVED]
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow([LABELS.get(c, c) for c in columns])
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue()
