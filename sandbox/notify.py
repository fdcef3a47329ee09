"""WeChat Pay notifications other than payments (refunds, transfer bills), and the fault layer
every WeChat Pay notification, payments included, goes through.

A notification is built once (so re-deliveries are byte-identical, as WeChat's are), kept in an
outbox, delivered in the background and retried on WeChat's schedule until the merchant answers
2xx. Faults: an attempt may be dropped (never reaches the merchant), duplicated, signed wrongly,
delayed, or held until `POST /sandbox/notifications/release`, which sends held ones newest first.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI

from sandbox.context import Sandbox, now_cst
from sandbox.signing import aes_gcm_encrypt

OUTBOX = "wechatpay.notification"
# WeChat Pay re-sends an unacknowledged notification after these many seconds.
NOTIFY_SCHEDULE = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)


def build_body(sb: Sandbox, *, event_type: str, summary: str, original_type: str, resource: dict[str, Any]) -> str:
    encrypted = aes_gcm_encrypt(
        sb.credentials.apiv3_key,
        json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
        original_type,
    )
    body = {
        "id": str(uuid.uuid4()),
        "create_time": now_cst().isoformat(),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {**encrypted, "original_type": original_type},
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


async def post_with_faults(sb: Sandbox, url: str, body: str, event_type: str) -> int:
    """One delivery attempt through the fault layer; the merchant's HTTP status, 0 if none."""
    f = sb.faults.notification(event_type)
    if f is not None and sb.faults.chance(f.drop_rate):
        sb.faults._count("notification_dropped")
        return 0
    headers = sb.notification_headers(body)
    if f is not None and sb.faults.chance(f.invalid_signature_rate):
        sb.faults._count("notification_bad_signature")
        sig = headers["Wechatpay-Signature"]
        headers["Wechatpay-Signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    copies = 2 if f is not None and sb.faults.chance(f.duplicate_rate) else 1
    if copies == 2:
        sb.faults._count("notification_duplicated")
    status = 0
    for i in range(copies):
        response = await sb.post(url, content=body.encode(), headers=headers)
        if i == 0:
            status = response.status_code if response is not None else 0
    return status


def enqueue(
    sb: Sandbox,
    *,
    url: str,
    event_type: str,
    summary: str,
    original_type: str,
    resource: dict[str, Any],
) -> str:
    """Store a notification and start delivering it (subject to faults); returns its id."""
    body = build_body(sb, event_type=event_type, summary=summary, original_type=original_type, resource=resource)
    nid = json.loads(body)["id"]
    sb.store.put(OUTBOX, nid, {
        "id": nid, "url": url, "event_type": event_type, "body": body,
        "attempts": [], "delivered": False, "held": False, "seq": _next_seq(sb),
    })
    f = sb.faults.notification(event_type)
    if f is not None and f.out_of_order:
        record = sb.store.get(OUTBOX, nid)
        record["held"] = True
        sb.store.put(OUTBOX, nid, record)
    else:
        delay = f.delay_seconds if f is not None else 0.0
        sb.spawn(run(sb, nid, first_delay=delay))
    return nid


def _next_seq(sb: Sandbox) -> int:
    counter = sb.store.get("sandbox.counter", OUTBOX) or {"n": 0}
    counter["n"] += 1
    sb.store.put("sandbox.counter", OUTBOX, counter)
    return counter["n"]


async def attempt(sb: Sandbox, nid: str) -> tuple[bool, int]:
    record = sb.store.get(OUTBOX, nid)
    status = await post_with_faults(sb, record["url"], record["body"], record["event_type"])
    delivered = 200 <= status < 300
    record = sb.store.get(OUTBOX, nid)
    record["attempts"].append({"at": now_cst().isoformat(), "status": status})
    record["delivered"] = record["delivered"] or delivered
    sb.store.put(OUTBOX, nid, record)
    return delivered, status


async def run(sb: Sandbox, nid: str, *, first_delay: float = 0.0, skip_first: bool = False) -> None:
    if not skip_first:
        if first_delay:
            await asyncio.sleep(first_delay)
        if (await attempt(sb, nid))[0]:
            return
    done = len(sb.store.get(OUTBOX, nid)["attempts"])
    for delay in NOTIFY_SCHEDULE[max(done - 1, 0):]:
        await asyncio.sleep(delay * sb.notify_retry_scale)
        record = sb.store.get(OUTBOX, nid)
        if record is None or record["delivered"]:
            return
        if (await attempt(sb, nid))[0]:
            return


def resume(sb: Sandbox) -> None:
    for record in sb.store.all(OUTBOX):
        if record["delivered"] or record["held"] or len(record["attempts"]) > len(NOTIFY_SCHEDULE):
            continue
        sb.spawn(run(sb, record["id"], skip_first=bool(record["attempts"])))


def install(app: FastAPI, sb: Sandbox) -> None:
    router = APIRouter(prefix="/sandbox/notifications", tags=["sandbox controls"])

    @router.get("")
    async def list_notifications(event_type: str | None = None):
        records = sorted(sb.store.all(OUTBOX), key=lambda r: r["seq"])
        return [
            {k: r[k] for k in ("id", "url", "event_type", "attempts", "delivered", "held")}
            for r in records if event_type is None or r["event_type"] == event_type
        ]

    @router.post("/release")
    async def release():
        """Deliver held notifications, newest first (out of order), one at a time."""
        held = sorted((r for r in sb.store.all(OUTBOX) if r["held"]), key=lambda r: -r["seq"])
        out = []
        for record in held:
            record["held"] = False
            sb.store.put(OUTBOX, record["id"], record)
            delivered, status = await attempt(sb, record["id"])
            if not delivered:
                sb.spawn(run(sb, record["id"], skip_first=True))
            out.append({"id": record["id"], "event_type": record["event_type"], "delivered": delivered, "status": status})
        return out

    @router.post("/{nid}/resend")
    async def resend(nid: str):
        delivered, status = await attempt(sb, nid)
        return {"id": nid, "delivered": delivered, "status": status}

    app.include_router(router)
