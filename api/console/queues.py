"""What waits on staff: one query per queue, each item with its age, deadline (where the
process has one), the decision it needs and its workflow in Temporal UI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.orm import Session

REFUND_REVIEW_DEADLINE = timedelta(hours=48)  # DESIGN.md: every refund review has a 48 h deadline


@dataclass
class Item:
    key: str                 # what the decision posts to (supplier id, refund no, ...)
    title: str
    since: datetime
    workflow_query: str      # Temporal UI list filter, e.g. OrderNo="..."
    detail: str = ""
    deadline: datetime | None = None
    extra: dict = field(default_factory=dict)

    def age(self, now: datetime) -> str:
        return human_age(now - self.since)

    def overdue(self, now: datetime) -> bool:
        return self.deadline is not None and now > self.deadline


@dataclass
class Queue:
    name: str
    label: str
    items: list[Item]
    decides: str             # which role decides (support / operator)
    count: int = 0

    def oldest(self, now: datetime) -> str:
        return min(self.items, key=lambda i: i.since).age(now) if self.items else "—"


def human_age(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 3600:
        return f"{seconds // 60}分钟"
    if seconds < 86400:
        return f"{seconds // 3600}小时{seconds % 3600 // 60}分"
    return f"{seconds // 86400}天{seconds % 86400 // 3600}小时"


def temporal_link(ui_url: str, namespace: str, query: str) -> str:
    return f"{ui_url}/namespaces/{namespace}/workflows?query={quote(query, safe='')}"


def _rows(s: Session, sql: str, **params) -> list:
    return s.execute(text(sql), params).all()


LIMIT = 100


def supplier_applications(s: Session) -> Queue:
    rows = _rows(s, """SELECT su.id, su.name, COALESCE(p.updated_at, su.created_at), p.kind, p.categories, p.resubmissions
        FROM suppliers su LEFT JOIN supplier_profiles p ON p.supplier_id = su.id
        WHERE su.status = 'pending_review' ORDER BY 3 LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM suppliers WHERE status = 'pending_review'"))
    return Queue("suppliers", "供应商入驻审核", [
        Item(str(i), name, at, f'SupplierId="{i}"',
             detail=f"{'企业' if kind == 'enterprise' else '个体工商户'} · 类目 {', '.join(cats or [])}"
                    + (f" · 第{resub + 1}次提交" if resub else ""))
        for i, name, at, kind, cats, resub in rows], "support", count)


def product_reviews(s: Session) -> Queue:
    rows = _rows(s, """SELECT p.id, p.title, COALESCE(d.submitted_at, p.created_at), su.name, p.category, p.supplier_id
        FROM products p JOIN suppliers su ON su.id = p.supplier_id LEFT JOIN product_details d ON d.product_id = p.id
        WHERE p.status = 'pending_review' ORDER BY 3 LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM products WHERE status = 'pending_review'"))
    return Queue("products", "商品审核", [
        Item(str(i), title, at, f'WorkflowId="product-{i}"', detail=f"{sup} · {cat}")
        for i, title, at, sup, cat, _ in rows], "support", count)


def product_edits(s: Session) -> Queue:
    rows = _rows(s, """SELECT e.id, e.product_id, e.created_at, p.title, e.title, su.name FROM product_edits e
        JOIN products p ON p.id = e.product_id JOIN suppliers su ON su.id = p.supplier_id
        WHERE e.status = 'pending' ORDER BY e.created_at LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM product_edits WHERE status = 'pending'"))
    return Queue("edits", "商品修改审核", [
        Item(str(i), f"{title} → {new_title}" if new_title else f"{title} · 图文修改", at,
             f'WorkflowId="product-{pid}-edit-{i}"', detail=f"{sup} · 修改 #{i}（原内容在售）")
        for i, pid, at, title, new_title, sup in rows], "support", count)


def held_reviews(s: Session) -> Queue:
    rows = _rows(s, """SELECT r.id, r.order_no, r.created_at, r.rating, r.text, r.moderation_note FROM product_reviews r
        WHERE r.status = 'pending_moderation' ORDER BY r.created_at LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM product_reviews WHERE status = 'pending_moderation'"))
    return Queue("reviews", "评价审核", [
        Item(str(i), f"{rating}星 · {body[:40]}", at, f'OrderNo="{order_no}"', detail=note or "")
        for i, order_no, at, rating, body, note in rows], "support", count)


def refund_reviews(s: Session) -> Queue:
    rows = _rows(s, """SELECT refund_no, order_no, created_at, kind, amount_fen, review_reasons FROM refunds
        WHERE status = 'REVIEWING' ORDER BY created_at LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM refunds WHERE status = 'REVIEWING'"))
    return Queue("refunds", "退款审核", [
        Item(no, f"{no} · 订单 {order_no}", at, f'OrderNo="{order_no}"',
             detail=f"{kind} · ¥{amount / 100:.2f} · {reasons}", deadline=at + REFUND_REVIEW_DEADLINE,
             extra={"amount_fen": amount})
        for no, order_no, at, kind, amount, reasons in rows], "support", count)


def withdrawals(s: Session) -> Queue:
    rows = _rows(s, """SELECT w.id, w.promoter_id, w.created_at, w.amount_fen, p.nickname FROM withdrawals w
        JOIN promoters p ON p.id = w.promoter_id WHERE w.status = 'REVIEWING' ORDER BY w.created_at LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM withdrawals WHERE status = 'REVIEWING'"))
    return Queue("withdrawals", "大额提现审核", [
        Item(str(i), f"提现 #{i} · {nick}", at, f'WorkflowId="withdrawal-{i}"', detail=f"¥{amount / 100:.2f}",
             extra={"promoter_id": pid})
        for i, pid, at, amount, nick in rows], "support", count)


def statements(s: Session) -> Queue:
    rows = _rows(s, """SELECT c.month, c.promoter_id, c.created_at, c.closing_fen, p.nickname FROM commission_statements c
        JOIN promoters p ON p.id = c.promoter_id WHERE c.status = 'awaiting_review' ORDER BY c.created_at LIMIT :n""",
                 n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM commission_statements WHERE status = 'awaiting_review'"))
    return Queue("statements", "佣金结算单审核", [
        Item(f"{month}/{pid}", f"{month} · {nick}", at, f'WorkflowId="settlement-commission-{month}"',
             detail=f"期末 ¥{closing / 100:.2f}")
        for month, pid, at, closing, nick in rows], "support", count)


def revivals(s: Session) -> Queue:
    rows = _rows(s, """SELECT r.promoter_id, r.n, r.started_at, r.deadline, r.completed_orders, r.target_orders, p.nickname
        FROM revivals r JOIN promoters p ON p.id = r.promoter_id WHERE r.status = 'open' ORDER BY r.started_at LIMIT :n""",
                 n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM revivals WHERE status = 'open'"))
    return Queue("revivals", "复活申请", [
        Item(str(pid), f"{nick} · 第{n}次复活", at, f'PromoterId="{pid}"', deadline=deadline,
             detail=f"已完成 {done}/{target} 单")
        for pid, n, at, deadline, done, target, nick in rows], "support", count)


def risk_flags(s: Session) -> Queue:
    rows = _rows(s, """SELECT id, kind, created_at, order_no, detail FROM risk_flags WHERE status = 'open'
        ORDER BY created_at LIMIT :n""", n=LIMIT)
    count = s.scalar(text("SELECT COUNT(*) FROM risk_flags WHERE status = 'open'"))
    return Queue("risk", "风控标记", [
        Item(str(i), f"#{i} {kind}", at, f'OrderNo="{order_no}"' if order_no else "", detail=detail)
        for i, kind, at, order_no, detail in rows], "support", count)


def stalled(s: Session) -> Queue:
    """Work that will not move on by itself: failed supplier settlements, ABNORMAL refunds,
    reconciliation differences of each day's latest run."""
    items = [Item(f"settlement:{no}", f"分账失败 · 订单 {no}", at, f'OrderNo="{no}"', detail=failure or "")
             for no, at, failure in _rows(s, """SELECT order_no, created_at, failure FROM supplier_settlements
                 WHERE status = 'FAILED' ORDER BY created_at LIMIT :n""", n=LIMIT)]
    items += [Item(f"refund:{no}", f"退款异常 · {no}", at, f'OrderNo="{order_no}"', detail=f"¥{amount / 100:.2f}")
              for no, order_no, at, amount in _rows(s, """SELECT refund_no, order_no, created_at, amount_fen FROM refunds
                  WHERE status = 'ABNORMAL' ORDER BY created_at LIMIT :n""", n=LIMIT)]
    items += [Item(f"reconciliation:{d.id}", f"对账差异 · {d.bill_date} · {d.kind}", d.started_at,
                   f'WorkflowId="{d.workflow_id}"', detail=f"{d.out_trade_no or ''} 我方 {d.ours_fen} / 账单 {d.bill_fen}")
              for d in _rows(s, """SELECT x.id, x.bill_date, x.kind, x.out_trade_no, x.ours_fen, x.bill_fen,
                    r.started_at, r.workflow_id
                  FROM reconciliation_differences x JOIN reconciliation_runs r
                    ON r.bill_date = x.bill_date AND r.attempt = x.attempt
                  WHERE x.attempt = (SELECT MAX(attempt) FROM reconciliation_runs r2 WHERE r2.bill_date = x.bill_date)
                  ORDER BY x.bill_date DESC, x.seq LIMIT :n""", n=LIMIT)]
    return Queue("stalled", "停滞工作", items, "support", len(items))


ALL = (supplier_applications, product_reviews, product_edits, held_reviews, refund_reviews, withdrawals, statements, revivals, risk_flags, stalled)


def all_queues(s: Session) -> list[Queue]:
    return [q(s) for q in ALL]


def now() -> datetime:
    return datetime.now(UTC)
