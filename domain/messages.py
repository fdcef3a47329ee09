"""Which subscribe message (订阅消息) template a stored notification is sent with, and its data.

Template ids are settings (`MESSAGE_TEMPLATE_*`); an empty id means that kind is not sent
(the notification is marked skipped). Values keep WeChat's limits per key type: thing ≤ 20
characters, character_string ≤ 32, phrase ≤ 5, amount / time in their formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from domain.order_status import OrderStatus

# Order events the buyer is told of: the suffix of the event's key (order:{no}:{suffix}).
ORDER_CHANGES = {
    "deposit_paid": OrderStatus.DEPOSIT_PAID, "paid": OrderStatus.PAID, "delivered": OrderStatus.DELIVERED,
    "received": OrderStatus.RECEIVED, "completed": OrderStatus.COMPLETED, "cancelled": OrderStatus.CANCELLED,
}


def order_change(order_no: str, status: str, key: str) -> OrderStatus | None:
    """The state change an order event tells the buyer of, or None (not one they follow)."""
    prefix = f"order:{order_no}:"
    if not key.startswith(prefix):
        return None
    suffix = key[len(prefix):]
    if suffix.startswith("shipped:"):
        return OrderStatus.SHIPPED
    found = ORDER_CHANGES.get(suffix)
    return found if found is not None and found.value == status else None


@dataclass(frozen=True)
class MessageTemplates:
    order_status: str
    presale_balance: str
    refund: str
    general: str
    promoter: str = ""   # a promoter's account: commission, withdrawals, assessment, revival, window
    supplier: str = ""   # a supplier's shop and products: review, suspension, stock


# the 5-character phrase (phrase1) a promoter or supplier notice is sent under
NOTICE_LABELS = {
    "commission_credited": "佣金到账", "withdrawal_paid": "提现到账", "withdrawal_returned": "提现退回",
    "auto_payout": "自动提现", "assessment_reminder": "考核提醒", "assessment_result": "考核结果",
    "revival_revived": "复活成功", "revival_expired": "复活到期", "window_closed": "橱窗关闭",
    "supplier_suspended": "店铺暂停", "supplier_reinstated": "店铺恢复", "product_suspended": "商品暂停",
    "product_reinstated": "商品恢复", "supplier_approved": "入驻通过", "supplier_rejected": "入驻驳回",
    "supplier_more_info": "补充资料", "supplier_expired": "申请过期", "product_listed": "商品上架",
    "product_rejected": "商品驳回", "low_stock": "库存不足", "sku_sold_out": "已售罄",
}
SUPPLIER_SUBJECTS = ("supplier", "product", "sku")


def _thing(text: str) -> str:
    return text[:20]


def subscribe_message(kind: str, subject_id: str, message: str, at: datetime, templates: MessageTemplates,
                      tz: str = "Asia/Shanghai", subject_type: str = "") -> tuple[str, dict[str, str]] | None:
    """(template id, data) for a notification, or None when no template is configured for it.
    Promoter notices (subject `promoter`) and supplier notices (a supplier, product or SKU) have
    templates of their own, on by default, so they reach their person like a buyer's do."""
    when = at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")
    if subject_type == "promoter":
        template, data = templates.promoter, {
            "phrase1": NOTICE_LABELS.get(kind, "账户通知")[:5], "thing2": _thing(message), "time3": when}
    elif subject_type in SUPPLIER_SUBJECTS and kind in NOTICE_LABELS:
        template, data = templates.supplier, {
            "phrase1": NOTICE_LABELS[kind][:5], "character_string2": subject_id[:32], "thing3": _thing(message),
            "time4": when}
    elif kind == "presale_balance_due":
        template, data = templates.presale_balance, {
            "character_string1": subject_id[:32], "thing2": _thing(message), "time3": when}
    elif kind.startswith("order_"):
        status = kind.removeprefix("order_").upper()
        label = OrderStatus(status).label if status in OrderStatus.__members__ else status
        template, data = templates.order_status, {
            "character_string1": subject_id[:32], "phrase2": label[:5], "thing3": _thing(message), "time4": when}
    elif kind.startswith("refund_"):
        template, data = templates.refund, {
            "character_string1": subject_id[:32], "thing2": _thing(message), "time3": when}
    else:
        template, data = templates.general, {"thing1": _thing(message), "time2": when}
    return (template, data) if template else None
