"""Tokens that can be taken back (a disabled user, a changed role, logout), failed logins
limited per account and per IP, and one key per purpose rotated alone: old tokens refused at
once; old pickup codes, fingerprints and identity hashes still recognised while their key is
kept in the previous keys."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
import jwt
from sqlalchemy import select

from api.auth import decode_token, hash_password
from api.errors import ApiError
from cli.seed import DEMO_SUPPLIER_PASSWORD
from db.models import User
from db.order_models import PickupCode
from db.risk_models import RiskFlag
from domain import keys
from domain.order_status import OrderStatus
from domain.risk import RiskKind
from tests.conftest import API_URL
from tests.helpers import make_user, pay, place, wait_status
from tests.promoter_helpers import become_promoter, new_buyer, signup_body
from tests.test_pickup_coupons import _outlets

ROTATED = "rotated-key-rotated-key-rotated-key-0123456789"


@asynccontextmanager
async def api_with(settings, sessions, temporal_env, **changes):
    """The API as it runs after an operator changed these settings (the worker keeps the old)."""
    from api.app import create_app

    app = create_app(settings.model_copy(update=changes), sessions=sessions, temporal_client=temporal_env.client)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=API_URL) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- tokens that can be taken back ---------------------------------------------------------


async def test_a_disabled_users_token_is_refused_at_once(api, demo, token, sessions):
    buyer = token(demo.buyer_user_id, "buyer")
    assert (await api.get("/auth/me", headers=buyer)).status_code == 200
    operator = token(make_user(sessions, "operator", "op-disable"), "operator")
    support = token(make_user(sessions, "support", "kefu-disable"), "support")
    assert (await api.put(f"/auth/users/{demo.buyer_user_id}/status", json={"active": False},
                          headers=support)).status_code == 403
    done = await api.put(f"/auth/users/{demo.buyer_user_id}/status", json={"active": False}, headers=operator)
    assert done.status_code == 204, done.text

    for path in ("/auth/me", "/orders", "/notifications"):
        refused = await api.get(path, headers=buyer)
        assert (refused.status_code, refused.json()["code"]) == (401, "USER_DISABLED"), path
    placed = await place(api, buyer, demo, quantity=1)
    assert (placed.status_code, placed.json()["code"]) == (401, "USER_DISABLED")

    # enabled again, the old sessions stay ended: disabling ended them all
    assert (await api.put(f"/auth/users/{demo.buyer_user_id}/status", json={"active": True},
                          headers=operator)).status_code == 204
    assert (await api.get("/auth/me", headers=buyer)).json()["code"] == "SESSION_ENDED"
    assert (await api.get("/auth/me", headers=token(demo.buyer_user_id, "buyer"))).status_code == 200
    missing = await api.put("/auth/users/999999/status", json={"active": False}, headers=operator)
    assert missing.status_code == 404


async def test_a_changed_role_ends_the_old_token(api, token, sessions):
    user_id = new_buyer(sessions, 700)
    buyer = token(user_id, "buyer")
    signed_up = await api.post("/promoters", json=signup_body(700), headers=buyer)
    assert signed_up.status_code == 201, signed_up.text
    stale = await api.get("/auth/me", headers=buyer)
    assert (stale.status_code, stale.json()["code"]) == (401, "ROLE_CHANGED")
    fresh = await api.get("/auth/me", headers=bearer(signed_up.json()["access_token"]))
    assert fresh.status_code == 200 and fresh.json()["role"] == "promoter"


async def test_logout_ends_only_that_session(api, demo, sessions):
    with sessions.begin() as s:
        s.get(User, demo.supplier_user_id).password_hash = hash_password(DEMO_SUPPLIER_PASSWORD)
    login = {"username": "demo-supplier", "password": DEMO_SUPPLIER_PASSWORD}
    phone, laptop = [bearer((await api.post("/auth/token", json=login)).json()["access_token"]) for _ in range(2)]
    assert (await api.post("/auth/logout", headers=phone)).status_code == 204
    ended = await api.get("/auth/me", headers=phone)
    assert (ended.status_code, ended.json()["code"]) == (401, "SESSION_ENDED")
    assert (await api.get("/auth/me", headers=laptop)).status_code == 200
    assert (await api.post("/auth/logout")).status_code == 401


async def test_failed_logins_are_limited_per_account_and_per_ip(settings, sessions, temporal_env, clean_db):
    with sessions.begin() as s:
        s.add(User(role="support", username="kefu-limit", display_name="客服", password_hash=hash_password("right-pass")))
    async with api_with(settings, sessions, temporal_env, login_failures_per_account="3/15 minutes",
                        login_failures_per_ip="5/15 minutes") as client:
        wrong = {"username": "kefu-limit", "password": "wrong-pass"}
        for _ in range(3):
            assert (await client.post("/auth/token", json=wrong)).json()["code"] == "BAD_CREDENTIALS"
        limited = await client.post("/auth/token", json=wrong | {"password": "right-pass"})
        assert (limited.status_code, limited.json()["code"]) == (429, "LOGIN_RATE_LIMITED")
        assert int(limited.headers["retry-after"]) > 0 and "account" in limited.json()["message"]
        # another account from the same address: two more failures, then the address is limited
        other = {"username": "someone-else", "password": "x"}
        for _ in range(2):
            assert (await client.post("/auth/token", json=other)).status_code == 401
        by_ip = await client.post("/auth/token", json=other)
        assert (by_ip.status_code, by_ip.json()["code"]) == (429, "LOGIN_RATE_LIMITED")
        assert "address" in by_ip.json()["message"]
    # another API process (or after the window) lets the right password in; successes never count
    async with api_with(settings, sessions, temporal_env) as client:
        for _ in range(8):
            assert (await client.post("/auth/token", json={"username": "kefu-limit",
                                                           "password": "right-pass"})).status_code == 200


# --- one key per purpose, rotated alone ----------------------------------------------------


async def test_rotating_the_token_key_refuses_old_tokens(api, demo, token, settings, sessions, temporal_env):
    old = token(demo.buyer_user_id, "buyer")
    async with api_with(settings, sessions, temporal_env, jwt_secret=ROTATED) as rotated:
        refused = await rotated.get("/auth/me", headers=old)
        assert (refused.status_code, refused.json()["code"]) == (401, "INVALID_TOKEN")
        with sessions.begin() as s:
            s.get(User, demo.supplier_user_id).password_hash = hash_password(DEMO_SUPPLIER_PASSWORD)
        login = await rotated.post("/auth/token", json={"username": "demo-supplier",
                                                        "password": DEMO_SUPPLIER_PASSWORD})
        new = bearer(login.json()["access_token"])
        assert (await rotated.get("/auth/me", headers=new)).status_code == 200
    assert (await api.get("/auth/me", headers=new)).json()["code"] == "INVALID_TOKEN"
    # the other purposes did not move: only the token key was rotated
    moved = settings.model_copy(update={"jwt_secret": ROTATED})
    assert moved.pickup_code_keys == settings.pickup_code_keys and moved.risk_hash_keys == settings.risk_hash_keys
    assert moved.identity_hash_keys == settings.identity_hash_keys
    assert moved.payload_key_set() == settings.payload_key_set()


def test_each_purpose_has_its_own_key(settings):
    fresh = settings.model_copy(update={"jwt_secret": None})
    derived = {fresh.resolved_jwt_secret(), fresh.pickup_code_keys.current, fresh.risk_hash_keys.current,
               fresh.identity_hash_keys.current, fresh.payload_key_set()[1][fresh.payload_key_set()[0]].hex()}
    assert len(derived) == 5, "two purposes share a key"
    assert fresh.pickup_code_keys.current == keys.derive(settings.master_key, keys.PICKUP_CODES).hex()
    # the master key rotated: everything derived moves, what the old one derived is still known
    rotated = fresh.model_copy(update={"master_key": ROTATED, "previous_master_keys": [settings.master_key]})
    assert rotated.pickup_code_keys.current != fresh.pickup_code_keys.current
    assert fresh.pickup_code_keys.current in rotated.pickup_code_keys.all
    try:
        decode_token(rotated, jwt.encode({"sub": "1", "role": "buyer", "sid": "x", "exp": 9999999999},
                                         fresh.resolved_jwt_secret(), "HS256"))
        raise AssertionError("a token of the old master key was accepted")
    except ApiError as err:
        assert err.code == "INVALID_TOKEN"


async def test_old_pickup_codes_verify_during_the_grace_period(
        api, sandbox, demo, token, temporal_env, sessions, settings):
    buyer, supplier = token(demo.buyer_user_id, "buyer"), token(demo.supplier_user_id, "supplier")
    near, _, staff_near, _ = await _outlets(api, supplier, sessions)
    placed = await api.post("/orders", headers=buyer, json={
        "window_id": demo.window_id, "fulfilment": "pickup", "outlet_id": near,
        "lines": [{"sku_id": demo.sku_ids[0], "quantity": 1}]})
    order_no = placed.json()["order_no"]
    await pay(sandbox, order_no)
    await wait_status(temporal_env.client, order_no, OrderStatus.PAID)
    code = (await api.get(f"/orders/{order_no}/pickup", headers=buyer)).json()["code"]
    old_key = settings.pickup_code_keys.current

    # rotated with no grace: the code the buyer holds is gone
    async with api_with(settings, sessions, temporal_env, pickup_code_key=ROTATED) as no_grace:
        assert (await no_grace.get(f"/orders/{order_no}/pickup", headers=buyer)).status_code == 404
        unknown = await no_grace.post("/pickups/verify", headers=token(staff_near["id"], "outlet_staff"),
                                      json={"code": code})
        assert (unknown.status_code, unknown.json()["code"]) == (404, "PICKUP_CODE_NOT_FOUND")
    # rotated with the old key kept as previous: shown and scanned as before
    async with api_with(settings, sessions, temporal_env, pickup_code_key=ROTATED,
                        pickup_code_previous_keys=[old_key]) as grace:
        shown = await grace.get(f"/orders/{order_no}/pickup", headers=buyer)
        assert shown.status_code == 200 and shown.json()["code"] == code
        scanned = await grace.post("/pickups/verify", headers=token(staff_near["id"], "outlet_staff"),
                                   json={"code": code})
        assert scanned.status_code == 200 and scanned.json()["status"] == "RECEIVED", scanned.text
    with sessions() as s:
        assert s.get(PickupCode, order_no).status == "picked_up"


async def test_old_fingerprints_still_count_during_the_grace_period(
        api, demo, token, temporal_env, sessions, settings):
    with sessions.begin() as s:
        users = [User(role="buyer", openid=f"oROTATE{i:021d}") for i in range(4)]
        s.add_all(users)
        s.flush()
        buyers = [u.id for u in users]
    device = {"X-Device-Id": "ios-rotate-shared"}

    def flags():
        with sessions() as s:
            return list(s.scalars(select(RiskFlag).where(RiskFlag.kind == RiskKind.SHARED_DEVICE)))

    for buyer in buyers[:2]:  # two accounts on one phone before the rotation
        assert (await place(api, token(buyer, "buyer") | device, demo, quantity=1)).status_code == 201
    old_key = settings.risk_hash_keys.current
    async with api_with(settings, sessions, temporal_env, risk_hash_key=ROTATED) as no_grace:
        third = await place(no_grace, token(buyers[2], "buyer") | device, demo, quantity=1)
        assert third.status_code == 201
    assert flags() == []  # without the old key the earlier orders are invisible
    async with api_with(settings, sessions, temporal_env, risk_hash_key=ROTATED,
                        risk_hash_previous_keys=[old_key]) as grace:
        fourth = await place(grace, token(buyers[3], "buyer") | device, demo, quantity=1)
        assert fourth.status_code == 201
    found = flags()
    assert [f.order_no for f in found] == [fourth.json()["order_no"]]
    assert sorted(found[0].related["buyer_user_ids"]) == sorted(buyers)


async def test_identity_hashes_still_match_during_the_grace_period(api, token, sessions, temporal_env, settings):
    first = await become_promoter(api, token, sessions, 710)
    old_key = settings.identity_hash_keys.current
    async with api_with(settings, sessions, temporal_env, identity_hash_key=ROTATED,
                        identity_hash_previous_keys=[old_key]) as grace:
        same_person = await grace.post("/promoters", json=signup_body(710), headers=token(new_buyer(sessions, 711), "buyer"))
        assert (same_person.status_code, same_person.json()["code"]) == (409, "IDENTITY_IN_USE")
        # the real name verified under the old key still matches a withdrawal's (hash of the full name)
        from tests.test_withdrawals import fund, withdraw

        fund(sessions, first["promoter_id"], 700_000)
        wrong = await withdraw(grace, first["headers"], 600_000, real_name="王大明")  # 王** as well
        assert (wrong.status_code, wrong.json()["code"]) == (422, "REAL_NAME_MISMATCH")
        right = await withdraw(grace, first["headers"], 600_000, real_name="王小明")
        assert right.status_code == 201, right.text
    async with api_with(settings, sessions, temporal_env, identity_hash_key=ROTATED) as no_grace:
        forgotten = await no_grace.post("/promoters", json=signup_body(710, channels_finder_id="sph_7120"),
                                        headers=token(new_buyer(sessions, 712), "buyer"))
        assert forgotten.status_code == 201  # without the old key the person is not recognised
