"""The notification outbox, sent as WeChat subscribe messages (订阅消息).

Every stored notification (`notify`, activities/catalog.py, written in the same
database transaction as the change it reports) starts `pending`. `deliver_messages` claims
pending rows (row locks, SKIP LOCKED: two drains never take the same row), sends each through
`MessagesClient` (`/cgi-bin/message/subscribe/send`) and marks it `sent` (with WeChat's msgid)
or `skipped` (no single recipient, no openid, no template for its kind, the user refused /
has no consent left). A row is claimed (`sending`) before the call, so a retried activity never
sends it again; only a row left `sending` by a crash for `resend_after` is tried once more.
WeChat's send has no idempotency key of its own: that crash window is the one place a message
could go out twice. A partner outage puts the row back to `pending` for the next drain.

`send_as_written` is the sender that keeps running: it LISTENs on the outbox's channel (each
insert NOTIFYs it at commit, migration 0031) and drains whenever woken, so a buyer hears of an
order's change at once while the order itself spends no activity on it, and changes written
close together go out in one batch.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import structlog
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session, sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.catalog import notify
from db.catalog_models import Notification
from db.models import Order, User
from domain.messages import MessageTemplates, order_change, subscribe_message
from integrations.errors import PartnerRejected, PartnerUnavailable
from integrations.messages import USER_REFUSED, MessagesClient

INVALID_OPENID = "40003"
OUTBOX_CHANNEL = "chuchuang_outbox"  # NOTIFYed by the notifications_written trigger (migration 0031)

log = structlog.get_logger()


def tell_buyer_of_order_change(s: Session, order_no: str, status: str, key: str) -> None:
    """Called by record_event for each new order event: a state change the buyer follows is
    put in the outbox, once per event."""
    change = order_change(order_no, status, key)
    if change is None:
        return
    buyer = s.scalar(select(Order.buyer_user_id).where(Order.order_no == order_no))
    if buyer is not None:
        notify(s, user_id=buyer, kind=f"order_{change.value.lower()}", subject_type="order", subject_id=order_no,
               message=f"订单{order_no[-6:]}：{change.label}", key=f"msg:{key}")


@dataclass
class _Claimed:
    id: int
    openid: str
    template_id: str
    data: dict[str, str]


class MessageActivities:
    def __init__(self, sessions: sessionmaker[Session], client: MessagesClient | None, templates: MessageTemplates,
                 *, batch: int = 50, resend_after: timedelta = timedelta(minutes=10), tz: str = "Asia/Shanghai",
                 look_every: timedelta = timedelta(seconds=5)):
        self.sessions = sessions
        self.look_every = look_every  # the listener also looks this often, woken or not
        self.client = client
        self.templates = templates
        self.batch = batch
        self.resend_after = resend_after
        self.tz = tz

    @activity.defn
    async def deliver_messages(self) -> int:
        """Send what the outbox holds (a batch at a time, the batch's sends concurrently); how
        many were sent."""
        sent = 0
        for _ in range(20):  # a bounded drain; what is left waits for the next one
            claimed = await asyncio.to_thread(self._claim)
            if not claimed:
                break
            outcomes = await asyncio.gather(*(self._send(row) for row in claimed))
            await asyncio.to_thread(self._finish, [(row.id, status, note) for row, (status, note) in
                                                   zip(claimed, outcomes, strict=True)])
            sent += sum(1 for status, _ in outcomes if status == "sent")
            outage = next((note for status, note in outcomes if status == "pending"), None)
            if outage is not None:
                raise ApplicationError(f"messages unavailable: {outage}", type="MESSAGES_UNAVAILABLE")
        return sent

    @activity.defn
    async def send_as_written(self, listen_for_seconds: int) -> int:
        """Send the outbox as it is written, for `listen_for_seconds`: drain, then wait for the
        outbox's NOTIFY (or `look_every`), again and again; how many were sent. A partner outage
        leaves the rows pending and the listener waits for the next wake."""
        deadline = time.monotonic() + listen_for_seconds
        sent = 0
        async with await psycopg.AsyncConnection.connect(self._conninfo(), autocommit=True) as listener:
            await listener.execute(f"LISTEN {OUTBOX_CHANNEL}")
            while True:
                try:
                    sent += await self.deliver_messages()
                except ApplicationError as err:
                    log.warning("messages.unavailable", error=str(err))
                activity.heartbeat(sent)
                left = deadline - time.monotonic()
                if left <= 0:
                    return sent
                async for _ in listener.notifies(timeout=min(left, self.look_every.total_seconds()), stop_after=1):
                    pass

    def _conninfo(self) -> str:
        url = self.sessions.kw["bind"].url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)

    async def _send(self, row: _Claimed) -> tuple[str, str | None]:
        """(new delivery status, note): sent, skipped (refused by WeChat) or pending (outage)."""
        try:
            answer = await self.client.send_subscribe(row.openid, row.template_id, row.data)
        except PartnerRejected as err:
            return "skipped", {USER_REFUSED: "user refused or has no consent left",
                               INVALID_OPENID: "invalid openid"}.get(err.code, f"rejected {err.code}")
        except PartnerUnavailable as err:
            return "pending", str(err)
        return "sent", f"msgid {answer.msgid}"

    def _claim(self) -> list[_Claimed]:
        now = datetime.now(UTC)
        with self.sessions.begin() as s:
            # two statements, each on its partial index (an OR of both would scan the table)
            claimable = [Notification.delivery_status == "pending",
                         (Notification.delivery_status == "sending") & (Notification.sent_at < now - self.resend_after)]
            rows: list[tuple[Notification, str | None]] = []
            for condition in claimable:
                rows += s.execute(
                    select(Notification, User.openid).outerjoin(User, User.id == Notification.recipient_user_id)
                    .where(condition).order_by(Notification.id).limit(self.batch - len(rows))
                    .with_for_update(of=Notification, skip_locked=True)).tuples().all()
                if len(rows) >= self.batch:
                    break
            claimed: list[_Claimed] = []
            for n, openid in rows:
                message = subscribe_message(n.kind, n.subject_id, n.message, n.created_at, self.templates, self.tz,
                                            subject_type=n.subject_type)
                skip = ("no single recipient (role notification)" if n.recipient_user_id is None
                        else "user has no openid" if not openid
                        else f"no template for {n.kind}" if message is None
                        else "no messages client" if self.client is None else None)
                if skip:
                    n.delivery_status, n.delivery_note = "skipped", skip
                    continue
                n.delivery_status, n.sent_at = "sending", now
                claimed.append(_Claimed(n.id, openid, message[0], message[1]))
            return claimed

    def _finish(self, outcomes: list[tuple[int, str, str | None]]) -> None:
        """Record each claimed row's outcome, in one statement; a row no longer `sending` (taken
        over after `resend_after`) is left as it is."""
        now = datetime.now(UTC)
        table = Notification.__table__
        with self.sessions.begin() as s:
            s.connection().execute(
                update(table).where(table.c.id == bindparam("row_id"), table.c.delivery_status == "sending")
                .values(delivery_status=bindparam("status"), delivery_note=bindparam("note"),
                        sent_at=bindparam("at")),
                [{"row_id": i, "status": status, "note": None if status == "pending" else note,
                  "at": now if status == "sent" else None} for i, status, note in outcomes])
