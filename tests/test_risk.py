"""Risk flags: many buyer accounts behind one device, IP or address, and frequent returners,
are flagged for support — and nothing they point at is blocked."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from db.models import Order, User
from db.order_models import Refund
from db.risk_models import OrderFingerprint, RiskFlag
from domain.order_status import OrderStatus
from domain.risk import RiskKind, RiskRules, address_key, findings, fingerprint
from domain.refunds import RefundStatus
from tests.helpers import ADDRESS, assert_books_balance, make_user, pay, place, wait_refund, wait_status


def _buyers(sessions, n: int, prefix: str) -> list[int]:
    with sessions.begin() as s:
        users = [User(role="buyer", openid=f"o{prefix}{i:024d}") for i in range(n)]
        s.add_all(users)
        s.flush()
        return [u.id for u in users]


def _flags(sessions, kind: RiskKind) -> list[RiskFlag]:
    with sessions() as s:
        return list(s.scalars(select(RiskFlag).where(RiskFlag.kind == kind).order_by(RiskFlag.id)))


def test_rules():
    rules = RiskRules(window=timedelta(days=30), accounts_per_device=3, accounts_per_ip=5, accounts_per_address=3)
    assert findings(rules, {RiskKind.SHARED_DEVICE: 2, RiskKind.SHARED_IP: 4, RiskKind.SHARED_ADDRESS: 1}) == []
    found = findings(rules, {RiskKind.SHARED_DEVICE: 3, RiskKind.SHARED_IP: 4, RiskKind.SHARED_ADDRESS: 7})
    assert [k for k, _ in found] == [RiskKind.SHARED_DEVICE, RiskKind.SHARED_ADDRESS]
    assert "3 buyer accounts on one device in 30 days" in found[0][1]
    # one door however it is typed; the receiver's name and phone are not part of it
    a = address_key(ADDRESS)
    b = address_key(ADDRESS | {"detail": " 世纪大道100号 ", "receiver": "李四", "phone": "13900000000"})
    assert a == b and a is not None and "王" not in a
    assert address_key(ADDRESS | {"detail": "世纪大道 101 号"}) != a and address_key(None) is None
    # fingerprints are keyed hashes: same input same print, another key another print, nothing for nothing
    assert fingerprint("k", "device", "dev-1") == fingerprint("k", "device", " dev-1 ")
    assert fingerprint("k", "device", "dev-1") != fingerprint("k2", "device", "dev-1")
    assert fingerprint("k", "device", "dev-1") != fingerprint("k", "ip", "dev-1")
    assert fingerprint("k", "device", None) is None and fingerprint("k", "device", "  ") is None


async def test_many_accounts_on_one_device_and_one_address_are_flagged_never_blocked(api, demo, token, sessions):
    buyers = _buyers(sessions, 4, "RISK")
    placed = []
    for n, buyer in enumerate(buyers[:3]):
        # the same phone (device id), the same door typed three ways
        address = ADDRESS | {"detail": ["世纪大道 100 号", "世纪大道100号", "世纪大道 100号"][n], "receiver": f"买家{n}"}
        r = await place(api, token(buyer, "buyer") | {"X-Device-Id": "ios-7F3A-shared"}, demo, quantity=1,
                        address=address)
        assert r.status_code == 201, r.text  # flagged or not, every order goes through
        placed.append(r.json()["order_no"])
    other = await place(api, token(buyers[3], "buyer") | {"X-Device-Id": "android-99"}, demo, quantity=1,
                        address=ADDRESS | {"detail": "陆家嘴环路 1 号"})
    assert other.status_code == 201

    device, address = _flags(sessions, RiskKind.SHARED_DEVICE), _flags(sessions, RiskKind.SHARED_ADDRESS)
    assert [f.order_no for f in device] == [placed[2]] and [f.order_no for f in address] == [placed[2]]
    assert device[0].related["buyer_user_ids"] == buyers[:3] and device[0].status == "open"
    assert _flags(sessions, RiskKind.SHARED_IP) == []  # one test client IP, five accounts needed
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Order)) == 4
        prints = list(s.scalars(select(OrderFingerprint)))
        # only keyed hashes are kept, never the device id or the address itself
        assert all(len(p.device_fp) == 64 and "ios" not in p.device_fp for p in prints)
        assert len({p.address_fp for p in prints}) == 2

    support = token(make_user(sessions, "support", "kefu-risk"), "support")
    listed = await api.get("/risk/flags", headers=support, params={"status": "open"})
    assert listed.status_code == 200 and {f["kind"] for f in listed.json()} == {"shared_device", "shared_address"}
    assert (await api.get("/risk/flags", headers=token(buyers[0], "buyer"))).status_code == 403
    flag_id = device[0].id
    bad = await api.post(f"/risk/flags/{flag_id}/review", headers=support, json={"status": "open", "note": "x"})
    assert (bad.status_code, bad.json()["code"]) == (422, "INVALID_DECISION")
    blank = await api.post(f"/risk/flags/{flag_id}/review", headers=support, json={"status": "cleared", "note": ""})
    assert blank.status_code == 422
    done = await api.post(f"/risk/flags/{flag_id}/review", headers=support,
                          json={"status": "cleared", "note": "一家三口共用一台手机"})
    assert done.status_code == 200 and done.json()["status"] == "cleared", done.text
    again = await api.post(f"/risk/flags/{flag_id}/review", headers=support, json={"status": "confirmed", "note": "x"})
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_REVIEWED")
    missing = await api.post("/risk/flags/999999/review", headers=support, json={"status": "cleared", "note": "x"})
    assert missing.status_code == 404
    operator = token(make_user(sessions, "operator", "op-risk"), "operator")
    assert (await api.post(f"/risk/flags/{address[0].id}/review", headers=operator,
                           json={"status": "cleared", "note": "x"})).status_code == 403


async def test_a_frequent_returner_is_flagged_and_their_cancel_still_goes_ahead(
        api, sandbox, demo, token, temporal_env, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    order_no = (await place(api, buyer, demo, quantity=1)).json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    with sessions.begin() as s:  # three refunds of earlier orders this month
        s.add_all([Refund(refund_no=f"RHIST{n}", order_no=order_no, buyer_user_id=demo.buyer_user_id,
                          kind="cancel", status="REFUNDED", amount_fen=1) for n in range(3)])
    asked = await api.post(f"/orders/{order_no}/refunds", headers=buyer, json={"kind": "cancel"})
    assert asked.status_code == 201, asked.text
    # a cancel is the buyer's right: flagged for support, never held for review
    assert asked.json()["status"] == "REFUNDING" and asked.json()["review_reasons"] == ""
    flags = _flags(sessions, RiskKind.FREQUENT_RETURNS)
    assert [(f.subject_id, f.buyer_user_id) for f in flags] == [(asked.json()["refund_no"], demo.buyer_user_id)]
    assert "3 refunds in 30 days" in flags[0].detail
    await wait_refund(temporal_env.client, asked.json()["refund_no"], RefundStatus.REFUNDED)
    with sessions() as s:
        assert_books_balance(s)
