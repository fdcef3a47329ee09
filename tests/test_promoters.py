"""Becoming a promoter (free), referral binding, the share payload."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, update

from db.models import Promoter, User, Window
from db.promoter_models import PromoterProfile, ReferralBinding
from domain.search_attributes import BUSINESS_STATUS, PROMOTER_ID
from workflows.promoter_lifecycle import workflow_id
from tests.promoter_helpers import (
    become_promoter,
    cycle_progress,
    new_buyer,
    signup_body,
    wrong_id_number,
    stop_promoter_workflows,  # noqa: F401
)

pytestmark = __import__("pytest").mark.usefixtures("stop_promoter_workflows")


async def test_a_buyer_becomes_a_promoter_for_free(api, token, sessions, temporal_env):
    user_id = new_buyer(sessions, 1)
    r = await api.post("/promoters", json=signup_body(1), headers=token(user_id, "buyer"))
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["status"] == "active" and out["id_number"].startswith("110") and "*" in out["id_number"]
    assert out["real_name"] == "王**" and out["channels_finder_id"] == "sph_0001"
    assert len(out["referral_code"]) == 8
    with sessions() as s:
        assert s.get(User, user_id).role == "promoter"
        profile = s.get(PromoterProfile, out["promoter_id"])
        assert profile.agreement_version == "2026-01" and profile.agreement_accepted_at is not None
        assert "1990" not in profile.id_number_masked and len(profile.id_number_hash) == 64
        assert s.scalar(select(Window).where(Window.promoter_id == out["promoter_id"])).id == out["window_id"]
    # the new token carries the promoter role
    me = await api.get("/promoters/me", headers={"Authorization": f"Bearer {out['access_token']}"})
    assert me.status_code == 200, me.text
    progress = await cycle_progress(temporal_env, out["promoter_id"])
    assert progress.text.startswith("0 of 3 orders, 30 days left") or progress.text.startswith("0 of 3 orders, 29")
    attrs = (await temporal_env.client.get_workflow_handle(workflow_id(out["promoter_id"])).describe()
             ).typed_search_attributes
    assert attrs.get(PROMOTER_ID) == str(out["promoter_id"]) and attrs.get(BUSINESS_STATUS) == "active"


async def test_bad_onboarding_input_gets_a_clear_4xx_and_writes_nothing(api, token, sessions):
    user_id = new_buyer(sessions, 2)
    headers = token(user_id, "buyer")
    cases = [
        (signup_body(2, id_number=wrong_id_number()), 422, "REAL_NAME_CHECK_FAILED"),
        (signup_body(2, agreement_accepted=False), 422, "AGREEMENT_REQUIRED"),
        (signup_body(2, agreement_version="2020-01"), 422, "AGREEMENT_OUTDATED"),
        (signup_body(2, referral_code="ZZZZZZZZ"), 422, "REFERRAL_CODE_UNKNOWN"),
        (signup_body(2, channels_finder_id="no spaces!"), 422, "VALIDATION_ERROR"),
    ]
    for body, status, code in cases:
        r = await api.post("/promoters", json=body, headers=headers)
        assert (r.status_code, r.json()["code"]) == (status, code), r.text
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Promoter)) == 0
        assert s.get(User, user_id).role == "buyer"
    staff = await api.post("/promoters", json=signup_body(2), headers=token(user_id, "supplier"))
    assert staff.status_code == 403


async def test_one_person_one_promoter(api, token, sessions):
    buyer = token(new_buyer(sessions, 3), "buyer")
    first = await api.post("/promoters", json=signup_body(3), headers=buyer)
    assert first.status_code == 201, first.text
    # the buyer's token ended with the role change (a promoter token came with the answer)
    again = await api.post("/promoters", json=signup_body(3), headers=buyer)
    assert (again.status_code, again.json()["code"]) == (401, "ROLE_CHANGED")
    promoter = {"Authorization": f"Bearer {first.json()['access_token']}"}
    assert (await api.get("/promoters/me", headers=promoter)).status_code == 200
    assert (await api.post("/promoters", json=signup_body(3), headers=promoter)).status_code == 403
    other = new_buyer(sessions, 4)
    same_id = await api.post("/promoters", json=signup_body(3), headers=token(other, "buyer"))
    assert same_id.status_code == 409 and same_id.json()["code"] == "IDENTITY_IN_USE"


async def test_referral_is_first_touch_permanent_and_never_loops(api, token, sessions):
    a = await become_promoter(api, token, sessions, 10)
    b = await become_promoter(api, token, sessions, 11, referral_code=a["referral_code"])
    assert b["referrer"]["promoter_id"] == a["promoter_id"] and b["referrer"]["source"] == "signup"
    c = await become_promoter(api, token, sessions, 12)

    bind = lambda who, code: api.post("/promoters/me/referrer", json={"code": code, "source": "poster"},  # noqa: E731
                                      headers=who["headers"])
    r = await bind(c, b["referral_code"].lower())
    assert r.status_code == 200 and r.json()["bound"] is True, r.text
    again = await bind(c, b["referral_code"])
    assert again.status_code == 200 and again.json()["bound"] is False
    other = await bind(c, a["referral_code"])
    assert (other.status_code, other.json()["code"]) == (409, "ALREADY_BOUND")
    self_ = await bind(a, a["referral_code"])
    assert (self_.status_code, self_.json()["code"]) == (422, "SELF_REFERRAL")
    loop = await bind(a, c["referral_code"])  # c ← b ← a: a under c would close a loop
    assert (loop.status_code, loop.json()["code"]) == (422, "REFERRAL_CYCLE")

    with sessions() as s:
        assert s.get(Promoter, c["promoter_id"]).referrer_id == b["promoter_id"]
        assert s.get(ReferralBinding, c["promoter_id"]).source == "poster"
        assert s.get(Promoter, a["promoter_id"]).referrer_id is None
    # permanent even underneath the API
    import pytest
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError, match="permanent"):
        with sessions.begin() as s:
            s.execute(update(Promoter).where(Promoter.id == c["promoter_id"]).values(referrer_id=a["promoter_id"]))


async def test_concurrent_cross_bindings_cannot_form_a_loop(api, token, sessions):
    a = await become_promoter(api, token, sessions, 20)
    b = await become_promoter(api, token, sessions, 21)
    results = await asyncio.gather(
        api.post("/promoters/me/referrer", json={"code": b["referral_code"]}, headers=a["headers"]),
        api.post("/promoters/me/referrer", json={"code": a["referral_code"]}, headers=b["headers"]))
    assert sorted(r.status_code for r in results) == [200, 422], [r.text for r in results]


async def test_share_payload(api, token, sessions):
    a = await become_promoter(api, token, sessions, 30)
    r = await api.get("/promoters/me/share", headers=a["headers"])
    assert r.status_code == 200, r.text
    share = r.json()
    assert share["referral_code"] == a["referral_code"] and share["window_id"] == a["window_id"]
    assert f"ref={a['referral_code']}" in share["path"] and len(share["scene"]) <= 32
    nobody = await api.get("/promoters/me/share", headers=token(a["user_id"], "buyer"))
    assert nobody.status_code == 403
