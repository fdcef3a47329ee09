"""Every dashboard figure equals the same figure computed here, in Python, from the raw orders,
refunds, window counters and ledger entries of a generated month (November 2026, Beijing time,
with orders either side of its edges): day, ISO week and month, the platform's series, every
breakdown (supplier, category, product, province, city, promoter, commission tier), a
supplier's and a promoter's own figures, and the CSV export. The dashboards read only the
rollups that activities/rollups.py computes."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import insert, select, text

from activities import ledger
from activities.rollups import rebuild, snapshot_views
from api.auth import issue_token
from db.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Order,
    OrderLine,
    Product,
    Promoter,
    Sku,
    Supplier,
    User,
    Window,
    WindowProduct,
)
from db.catalog_models import WindowProductStat
from db.order_models import Refund, RefundLine
from domain import ledger as rules
from domain.dashboards import Grain, period_start
from domain.ledger import balance_delta, entry_hash
from tests.helpers import assert_books_balance

TZ = ZoneInfo("Asia/Shanghai")
FIRST, LAST = date(2026, 10, 29), date(2026, 12, 2)   # orders fall in these days (local)
REGIONS = [("上海", "上海"), ("广东", "深圳"), ("广东", "广州"), ("浙江", "杭州"), ("四川", "成都")]
CATEGORIES = ["food", "beauty", "home"]


def post_at(s, at: datetime, key: str, kind: str, postings: list[rules.Posting], order_no: str | None) -> None:
    """ledger.post, at a past instant (the real one always books at now())."""
    rules.check_balanced(postings)
    txn = s.execute(insert(LedgerTransaction).values(idempotency_key=key, kind=kind, order_no=order_no, memo="",
                                                     created_at=at).returning(LedgerTransaction.id)).scalar()
    accounts = ledger._locked_accounts(s, {p.account for p in postings})
    for p in postings:
        account = accounts[p.account]
        digest = entry_hash(account.last_hash, key=key, account=p.account, amount_fen=p.amount_fen,
                            line=p.order_line_id, tier=p.tier, rule=p.rule)
        s.add(LedgerEntry(transaction_id=txn, account_id=account.id, amount_fen=p.amount_fen, order_no=order_no,
                          order_line_id=p.order_line_id, tier=p.tier, rule=p.rule, prev_hash=account.last_hash,
                          hash=digest, created_at=at))
        account.balance_fen += balance_delta(p.account, p.amount_fen)
        account.last_hash = digest
    s.flush()


def local(day: date, seconds: int) -> datetime:
    return datetime.combine(day, time(), TZ) + timedelta(seconds=seconds)


def generate(sessions, rng: random.Random) -> dict:
    """A month of sales written as the real process leaves them. Returns the view counters per
    (local day, product) it recorded."""
    views: dict[tuple[date, int], tuple[int, int]] = {}
    with sessions.begin() as s:
        suppliers = []
        for i in range(3):
            owner = User(role="supplier", username=f"sup{i}", display_name=f"供应商{i}")
            s.add(owner)
            s.flush()
            sup = Supplier(owner_user_id=owner.id, name=f"供应商{i}", status="active", service_fee_bps=300)
            s.add(sup)
            s.flush()
            suppliers.append(sup.id)
        skus = []
        for i in range(7):
            product = Product(supplier_id=suppliers[i % 3], title=f"商品{i}", category=CATEGORIES[i % 3], status="listed")
            s.add(product)
            s.flush()
            sku = Sku(product_id=product.id, spec="", price_fen=rng.choice([990, 2990, 5900, 12800]), stock=10_000,
                      commission_bps=1500)
            s.add(sku)
            s.flush()
            skus.append((sku.id, product.id, product.supplier_id, sku.price_fen))
        promoters, windows = [], []
        for i in range(8):
            user = User(role="promoter", openid=f"op-p{i}", display_name=f"推客{i}")
            s.add(user)
            s.flush()
            joined = local(FIRST + timedelta(days=rng.randrange(0, 34)), rng.randrange(86400))
            promoter = Promoter(user_id=user.id, nickname=f"推客{i}", status="active", created_at=joined)
            s.add(promoter)
            s.flush()
            window = Window(promoter_id=promoter.id, name=f"橱窗{i}")
            s.add(window)
            s.flush()
            promoters.append(promoter.id)
            windows.append(window.id)
            for sku_id, product_id, *_ in skus:
                s.add(WindowProduct(window_id=window.id, product_id=product_id, status="mounted"))
        buyers = []
        for i in range(40):
            user = User(role="buyer", openid=f"op-b{i}", display_name=f"买家{i}")
            s.add(user)
            s.flush()
            buyers.append(user.id)
        s.flush()
        for n in range(320):
            day = FIRST + timedelta(days=rng.randrange((LAST - FIRST).days + 1))
            # edges of the days matter: some orders a second either side of local midnight
            seconds = rng.choice([0, 1, 86399, rng.randrange(86400), rng.randrange(86400)])
            at = local(day, seconds)
            paid = rng.random() < 0.85
            w = rng.randrange(8) if rng.random() < 0.8 else None
            province, city = rng.choice(REGIONS)
            order_no = f"CC{n:08d}"
            lines = []
            for sku_id, product_id, supplier_id, price in rng.sample(skus, rng.choice([1, 1, 2])):
                qty = rng.choice([1, 1, 2, 3])
                paid_fen = price * qty - (rng.choice([0, 0, 100]) if price * qty > 100 else 0)
                lines.append(OrderLine(order_no=order_no, sku_id=sku_id, product_id=product_id, supplier_id=supplier_id,
                                       title="x", unit_price_fen=price, quantity=qty, paid_fen=paid_fen,
                                       commission_fen=paid_fen * 15 // 100, service_fee_fen=paid_fen * 3 // 100,
                                       list_fen=price * qty))
            total = sum(ln.paid_fen for ln in lines)
            order = Order(order_no=order_no, buyer_user_id=rng.choice(buyers[:25] if rng.random() < 0.7 else buyers),
                          window_id=windows[w] if w is not None else None,
                          promoter_id=promoters[w] if w is not None else None, status="PAID" if paid else "CANCELLED",
                          total_fen=total, shipping_address={"province": province, "city": city, "receiver": "王*明"},
                          created_at=at - timedelta(minutes=2), paid_at=at if paid else None)
            s.add(order)
            s.flush()
            s.add_all(lines)
            s.flush()
            if not paid:
                continue
            post_at(s, at, f"order:{order_no}:payment", "payment", rules.transfer(rules.CLEARING, rules.ORDERS_HELD, total),
                    order_no)
            if order.promoter_id is not None:
                chain = [(1, order.promoter_id)] + ([(2, promoters[(w + 1) % 8])] if rng.random() < 0.3 else [])
                if rng.random() < 0.15:
                    chain.append((0, promoters[(w + 3) % 8]))  # a regional bonus (tier 0)
                for tier, pid in chain:
                    postings = []
                    for ln in lines:
                        share = ln.commission_fen * (7 if tier == 1 else 2) // 10
                        postings += rules.transfer(rules.ORDERS_HELD, rules.promoter_pending(pid), share,
                                                   order_line_id=ln.id, tier=tier)
                    if postings:
                        post_at(s, at + timedelta(seconds=1), f"order:{order_no}:commission:tier{tier}:{pid}",
                                "commission_pending", postings, order_no)
            if rng.random() < 0.2:  # a refund of the first line's units, finished some days later (or open)
                ln = lines[0]
                finished = at + timedelta(days=rng.choice([0, 1, 3, 8]), seconds=rng.randrange(86400))
                done = rng.random() < 0.8
                refund_no = f"RF{n:08d}"
                s.add(Refund(refund_no=refund_no, order_no=order_no, buyer_user_id=order.buyer_user_id, kind="return",
                             status="REFUNDED" if done else "REVIEWING", amount_fen=ln.paid_fen,
                             created_at=at, finished_at=finished if done else None))
                s.flush()
                s.add(RefundLine(refund_no=refund_no, order_line_id=ln.id, quantity=ln.quantity, claimed_before=0,
                                 amount_fen=ln.paid_fen))
                if done:
                    post_at(s, finished, f"refund:{refund_no}", "refund",
                            rules.transfer(rules.ORDERS_HELD, rules.CLEARING, ln.paid_fen), order_no)
        # window counters, snapshotted at the end of every day as the Schedule does
        running = defaultdict(lambda: [0, 0])
        day = FIRST - timedelta(days=1)
        while day <= LAST:
            for sku_id, product_id, *_ in skus:
                for wid in rng.sample(windows, 3):
                    e, c = rng.randrange(0, 50), rng.randrange(0, 10)
                    running[(wid, product_id)][0] += e
                    running[(wid, product_id)][1] += c
                    views[(day, product_id)] = tuple(a + b for a, b in zip(views.get((day, product_id), (0, 0)), (e, c)))
            s.execute(text("DELETE FROM window_product_stats"))
            s.execute(insert(WindowProductStat), [{"window_id": w_, "product_id": p, "exposures": ec[0], "clicks": ec[1]}
                                                  for (w_, p), ec in running.items()])
            snapshot_views(s, day)
            day += timedelta(days=1)
    return {"views": views}


def expected(sessions, views) -> dict:
    """The figures, from the raw rows: {(grain, period_start, dim, key): {measure: value}}."""
    out: dict = defaultdict(lambda: defaultdict(int))
    with sessions() as s:
        orders = s.execute(select(Order.order_no, Order.buyer_user_id, Order.promoter_id, Order.total_fen,
                                  Order.paid_at, Order.shipping_address).where(Order.paid_at.is_not(None))).all()
        lines = s.execute(select(OrderLine.id, OrderLine.order_no, OrderLine.product_id, OrderLine.supplier_id,
                                 OrderLine.paid_fen, OrderLine.quantity, Product.category)
                          .join(Product, Product.id == OrderLine.product_id)).all()
        refunds = s.execute(select(Refund.refund_no, Refund.order_no, Refund.amount_fen, Refund.finished_at)
                            .where(Refund.status == "REFUNDED")).all()
        refund_lines = s.execute(select(RefundLine.refund_no, RefundLine.order_line_id, RefundLine.amount_fen)).all()
        entries = s.execute(select(LedgerTransaction.kind, LedgerTransaction.created_at, LedgerTransaction.order_no,
                                   LedgerEntry.amount_fen, LedgerEntry.tier, LedgerEntry.order_line_id,
                                   LedgerAccount.code, LedgerAccount.owner_id)
                            .join(LedgerEntry, LedgerEntry.transaction_id == LedgerTransaction.id)
                            .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id)).all()
        promoters = s.execute(select(Promoter.id, Promoter.created_at)).all()
    by_order = {o.order_no: o for o in orders}
    line_of = {ln.id: ln for ln in lines}
    refund_of = {r.refund_no: r for r in refunds}

    def periods(at: datetime):
        d = at.astimezone(TZ).date()
        return [(g.value, period_start(d, g)) for g in Grain]

    def region(o):
        return o.shipping_address["province"], f'{o.shipping_address["province"]}/{o.shipping_address["city"]}'

    # sales: (grain, start, dim, key) -> buyer -> set of orders, plus sums
    buyers: dict = defaultdict(lambda: defaultdict(set))
    promoters_active: dict = defaultdict(set)
    for o in orders:
        province, city = region(o)
        for g, start in periods(o.paid_at):
            keys = [("all", ""), ("province", province), ("city", city)]
            if o.promoter_id is not None:
                keys.append(("promoter", str(o.promoter_id)))
                promoters_active[(g, start)].add(o.promoter_id)
            for dim, key in keys:
                out[(g, start, dim, key)]["gmv_fen"] += o.total_fen
                buyers[(g, start, dim, key)][o.buyer_user_id].add(o.order_no)
    for ln in lines:
        o = by_order.get(ln.order_no)
        if o is None:
            continue
        province, city = region(o)
        for g, start in periods(o.paid_at):
            for dim, key in [("all", ""), ("province", province), ("city", city)] + (
                    [("promoter", str(o.promoter_id))] if o.promoter_id is not None else []):
                out[(g, start, dim, key)]["units"] += ln.quantity
            for dim, key in [("supplier", str(ln.supplier_id)), ("category", ln.category), ("product", str(ln.product_id))]:
                out[(g, start, dim, key)]["gmv_fen"] += ln.paid_fen
                out[(g, start, dim, key)]["units"] += ln.quantity
                buyers[(g, start, dim, key)][o.buyer_user_id].add(o.order_no)
    for k, per_buyer in buyers.items():
        out[k]["paid_orders"] = sum(len(v) for v in per_buyer.values())
        out[k]["paying_buyers"] = len(per_buyer)
        out[k]["repeat_buyers"] = sum(1 for v in per_buyer.values() if len(v) >= 2)
    for (g, start), active in promoters_active.items():
        out[(g, start, "all", "")]["active_promoters"] = len(active)
    for pid, joined in promoters:
        for g, start in periods(joined):
            out[(g, start, "all", "")]["new_promoters"] += 1
    refunded_orders: dict = defaultdict(set)
    for r in refunds:
        o = by_order[r.order_no]
        province, city = region(o)
        for g, start in periods(r.finished_at):
            for dim, key in [("all", ""), ("province", province), ("city", city)] + (
                    [("promoter", str(o.promoter_id))] if o.promoter_id is not None else []):
                out[(g, start, dim, key)]["refund_fen"] += r.amount_fen
                refunded_orders[(g, start, dim, key)].add(r.order_no)
    for refund_no, line_id, amount in refund_lines:
        r = refund_of.get(refund_no)
        if r is None:
            continue
        ln = line_of[line_id]
        for g, start in periods(r.finished_at):
            for dim, key in [("supplier", str(ln.supplier_id)), ("category", ln.category), ("product", str(ln.product_id))]:
                out[(g, start, dim, key)]["refund_fen"] += amount
                refunded_orders[(g, start, dim, key)].add(r.order_no)
    for k, nos in refunded_orders.items():
        out[k]["refunded_orders"] = len(nos)
    # from the ledger: commission credited to promoters, and (a cross-check) GMV from the payments
    paid_in: dict = defaultdict(int)
    for kind, at, order_no, amount, tier, line_id, code, owner in entries:
        if kind == "payment" and code == rules.CLEARING:
            for g, start in periods(at):
                paid_in[(g, start)] += amount
        if kind != "commission_pending" or amount >= 0:
            continue
        o = by_order[order_no]
        ln = line_of[line_id]
        province, city = region(o)
        for g, start in periods(at):
            for dim, key in [("all", ""), ("province", province), ("city", city), ("promoter", str(owner)),
                             ("tier", str(tier)), ("supplier", str(ln.supplier_id)), ("category", ln.category),
                             ("product", str(ln.product_id))]:
                out[(g, start, dim, key)]["commission_fen"] -= amount
    for (g, start), amount in paid_in.items():
        assert out[(g, start, "all", "")]["gmv_fen"] == amount, "orders and the ledger's payments disagree"
    # window views: the day's increments
    with sessions() as s:
        product_info = {p.id: p for p in s.scalars(select(Product))}
    for (day, product_id), (e, c) in views.items():
        p = product_info[product_id]
        for g in Grain:
            start = period_start(day, g)
            for dim, key in [("all", ""), ("supplier", str(p.supplier_id)), ("category", p.category),
                             ("product", str(product_id))]:
                out[(g.value, start, dim, key)]["exposures"] += e
                out[(g.value, start, dim, key)]["clicks"] += c
    return out


@pytest.fixture
def month(sessions, clean_db, settings):
    rng = random.Random(20261103)
    generated = generate(sessions, rng)
    rebuild(sessions, settings.settlement_timezone, FIRST - timedelta(days=1), LAST)
    return expected(sessions, generated["views"])


@pytest.fixture
async def client(settings, sessions, sandbox_app):
    from api.app import create_app

    app = create_app(settings, sessions=sessions)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as c:
        yield c


def staff(settings, sessions):
    with sessions.begin() as s:
        user = User(role="operator", username="ops-dash", display_name="运营")
        s.add(user)
        s.flush()
        return {"Authorization": f"Bearer {issue_token(settings, s, user.id, 'operator')}"}


MEASURES = ("gmv_fen", "paid_orders", "paying_buyers", "repeat_buyers", "units", "refund_fen", "refunded_orders",
            "commission_fen", "exposures", "clicks", "new_promoters", "active_promoters")


def figures_of(want: dict) -> dict:
    return {m: want.get(m, 0) for m in MEASURES}


async def test_every_platform_figure_equals_the_raw_rows(month, client, settings, sessions):
    headers = staff(settings, sessions)
    checked = 0
    for grain, count in ((Grain.DAY, (LAST - FIRST).days + 2), (Grain.WEEK, 7), (Grain.MONTH, 3)):
        got = await client.get("/dashboards/platform", headers=headers,
                               params={"grain": grain.value, "periods": count, "until": LAST.isoformat()})
        assert got.status_code == 200, got.text
        body = got.json()
        for row in body["series"]:
            want = figures_of(month[(grain.value, date.fromisoformat(row["period_start"]), "all", "")])
            assert {m: row[m] for m in MEASURES} == want, (grain, row["period_start"])
            assert row["aov_fen"] == (want["gmv_fen"] // want["paid_orders"] if want["paid_orders"] else None)
            assert row["repeat_rate_bps"] == (want["repeat_buyers"] * 10_000 // want["paying_buyers"]
                                              if want["paying_buyers"] else None)
            assert row["refund_rate_bps"] == (want["refund_fen"] * 10_000 // want["gmv_fen"] if want["gmv_fen"] else None)
            assert row["conversion_bps"] == (want["paid_orders"] * 10_000 // want["exposures"]
                                             if want["exposures"] else None)
            checked += 1
        current, previous = body["current"], body["previous"]
        if previous["gmv_fen"]:
            assert body["change_bps"]["gmv_fen"] == (current["gmv_fen"] - previous["gmv_fen"]) * 10_000 // previous["gmv_fen"]
    assert checked >= 40
    november = month[("month", date(2026, 11, 1), "all", "")]
    assert november["paid_orders"] > 150 and november["refund_fen"] > 0 and november["commission_fen"] > 0


async def test_every_breakdown_equals_the_raw_rows(month, client, settings, sessions):
    headers = staff(settings, sessions)
    for grain, start in ((Grain.MONTH, date(2026, 11, 1)), (Grain.WEEK, date(2026, 11, 23)), (Grain.DAY, date(2026, 11, 30))):
        for dim in ("supplier", "category", "product", "province", "city", "promoter", "tier"):
            got = await client.get("/dashboards/platform/breakdown", headers=headers,
                                   params={"dim": dim, "grain": grain.value, "period": start.isoformat()})
            assert got.status_code == 200, got.text
            rows = {r["key"]: {m: r[m] for m in MEASURES} for r in got.json()["rows"]}
            want = {k[3]: figures_of(v) for k, v in month.items() if k[:3] == (grain.value, start, dim)}
            assert rows == want, (grain, dim)
            assert rows, (grain, dim)


async def test_supplier_and_promoter_figures_and_csv(month, client, settings, sessions):
    with sessions() as s:
        supplier = s.scalars(select(Supplier).order_by(Supplier.id)).first()
        promoter_id = s.scalar(select(Promoter.id).order_by(Promoter.id))
        promoter_user = s.scalar(select(Promoter.user_id).where(Promoter.id == promoter_id))
        other = s.scalars(select(Supplier).order_by(Supplier.id.desc())).first()
    with sessions.begin() as s:
        own = {"Authorization": f"Bearer {issue_token(settings, s, supplier.owner_user_id, 'supplier')}"}
    got = await client.get("/dashboards/supplier", headers=own,
                           params={"grain": "month", "periods": 3, "until": "2026-11-30"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["supplier_id"] == supplier.id
    for row in body["series"]:
        want = figures_of(month[("month", date.fromisoformat(row["period_start"]), "supplier", str(supplier.id))])
        assert {m: row[m] for m in MEASURES} == want
    products = {r["key"]: {m: r[m] for m in MEASURES} for r in body["products"]}
    assert products == {k[3]: figures_of(v) for k, v in month.items() if k[:3] == ("month", date(2026, 11, 1), "product")
                        and int(k[3]) in _products_of(sessions, supplier.id)}
    assert body["best_sellers"][0]["units"] >= body["slow_sellers"][0]["units"]
    # a supplier sees only its own
    refused = await client.get("/dashboards/supplier", headers=own, params={"supplier_id": other.id})
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"
    assert (await client.get("/dashboards/platform", headers=own)).status_code == 403

    with sessions.begin() as s:
        mine = {"Authorization": f"Bearer {issue_token(settings, s, promoter_user, 'promoter')}"}
    got = await client.get("/dashboards/promoter", headers=mine, params={"grain": "day", "periods": 35,
                                                                         "until": LAST.isoformat()})
    assert got.status_code == 200, got.text
    for row in got.json()["series"]:
        want = month[("day", date.fromisoformat(row["period_start"]), "promoter", str(promoter_id))]
        assert (row["gmv_fen"], row["paid_orders"], row["commission_fen"]) == (
            want.get("gmv_fen", 0), want.get("paid_orders", 0), want.get("commission_fen", 0))
    assert (await client.get("/dashboards/promoter", headers=mine, params={"promoter_id": promoter_id + 1})).status_code == 403

    exported = await client.get("/dashboards/platform/breakdown", headers=staff(settings, sessions),
                                params={"dim": "city", "grain": "month", "period": "2026-11-01", "format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    reader = list(csv.reader(io.StringIO(exported.text.lstrip("\ufeff"))))
    columns = reader[1]
    rows = {r[0]: dict(zip(columns, r)) for r in reader[2:]}
    want = {k[3]: v for k, v in month.items() if k[:3] == ("month", date(2026, 11, 1), "city")}
    assert set(rows) == set(want)
    for city, row in rows.items():
        assert int(row["gmv_fen"]) == want[city]["gmv_fen"] and int(row["paid_orders"]) == want[city]["paid_orders"]
    with sessions() as s:
        assert_books_balance(s)


def _products_of(sessions, supplier_id: int) -> set[int]:
    with sessions() as s:
        return set(s.scalars(select(Product.id).where(Product.supplier_id == supplier_id)))


async def test_repeat_purchase_alert_below_the_setting(month, client, settings, sessions):
    headers = staff(settings, sessions)
    body = (await client.get("/dashboards/platform", headers=headers,
                             params={"grain": "day", "periods": 2, "until": "2026-11-15"})).json()
    rate = body["current"]["repeat_rate_bps"]
    assert body["repeat_rate_alert_bps"] == settings.repeat_purchase_alert_bps == 4000
    assert [a["code"] for a in body["alerts"]] == (["REPEAT_RATE_LOW"] if rate is not None and rate < 4000 else [])
    monthly = (await client.get("/dashboards/platform", headers=headers,
                                params={"grain": "month", "periods": 2, "until": "2026-11-15"})).json()
    assert monthly["current"]["repeat_rate_bps"] >= 4000 and monthly["alerts"] == []
    assert rate is not None and rate < 4000  # one day's buyers seldom buy twice: the alert shows


async def test_a_rebuild_is_idempotent(month, sessions, settings):
    with sessions() as s:
        before = s.execute(text("SELECT grain, period_start, dim, key, gmv_fen, commission_fen FROM rollup_facts "
                                "ORDER BY 1, 2, 3, 4")).all()
    rebuild(sessions, settings.settlement_timezone, date(2026, 11, 10), date(2026, 11, 12))
    with sessions() as s:
        after = s.execute(text("SELECT grain, period_start, dim, key, gmv_fen, commission_fen FROM rollup_facts "
                               "ORDER BY 1, 2, 3, 4")).all()
    assert before == after
