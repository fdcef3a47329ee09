"""Small leaks closed (issue 16 §7): coupon codes are listed only to their supplier and the
platform's staff; window exposures and clicks are counted once per viewer and rate-limited."""

from __future__ import annotations

from api.ratelimit import ViewerLimits
from tests.helpers import make_user
from tests.test_settlement import second_supplier


async def test_coupon_codes_are_listed_only_to_their_supplier_and_staff(api, demo, token, sessions):
    supplier = token(demo.supplier_user_id, "supplier")
    made = await api.post("/coupons", headers=supplier, json={
        "code": "SPRING10", "kind": "fixed", "amount_fen": 1_000, "total_limit": 100})
    assert made.status_code == 201, made.text
    _, other_owner, _ = second_supplier(sessions, demo)
    support = token(make_user(sessions, "support", "coupon-support"), "support")

    anonymous = await api.get("/coupons", params={"supplier_id": demo.supplier_id})
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "UNAUTHORIZED")
    for role, user_id in (("buyer", demo.buyer_user_id), ("promoter", demo.promoter_user_id)):
        refused = await api.get("/coupons", params={"supplier_id": demo.supplier_id}, headers=token(user_id, role))
        assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    someone_elses = await api.get("/coupons", params={"supplier_id": demo.supplier_id},
                                  headers=token(other_owner, "supplier"))
    assert someone_elses.status_code == 403
    assert (await api.get("/coupons", headers=token(other_owner, "supplier"))).json() == []

    own = await api.get("/coupons", headers=supplier)
    assert [c["code"] for c in own.json()] == ["SPRING10"]
    staff = await api.get("/coupons", params={"supplier_id": demo.supplier_id}, headers=support)
    assert [c["code"] for c in staff.json()] == ["SPRING10"]
    unnamed = await api.get("/coupons", headers=support)
    assert (unnamed.status_code, unnamed.json()["code"]) == (422, "SUPPLIER_REQUIRED")


async def test_window_events_are_counted_per_viewer_and_rate_limited(api, stack, demo, token, sessions, settings):
    stack.state.viewer_limits = ViewerLimits(settings.model_copy(update={"window_event_rate": "3/minute"}))
    try:
        url = f"/windows/{demo.window_id}/events"
        buyer, promoter = token(demo.buyer_user_id, "buyer"), token(demo.promoter_user_id, "promoter")
        second = token(make_user(sessions, "buyer", "second-viewer"), "buyer")

        assert (await api.post(url, json={"product_id": demo.product_id, "kind": "click"})).status_code == 401
        for role in ("supplier", "outlet_staff", "support", "operator"):
            refused = await api.post(url, json={"product_id": demo.product_id, "kind": "click"},
                                     headers=token(make_user(sessions, role, f"viewer-{role}"), role))
            assert refused.status_code == 403, (role, refused.text)

        for _ in range(3):
            assert (await api.post(url, json={"product_id": demo.product_id, "kind": "exposure"},
                                   headers=buyer)).status_code == 204
        limited = await api.post(url, json={"product_id": demo.product_id, "kind": "click"}, headers=buyer)
        assert (limited.status_code, limited.json()["code"]) == (429, "RATE_LIMITED")
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        # another viewer has their own budget
        assert (await api.post(url, json={"product_id": demo.product_id, "kind": "exposure"},
                               headers=second)).status_code == 204
        missing = await api.post(url, json={"product_id": 999_999, "kind": "exposure"}, headers=second)
        assert missing.status_code == 404

        stats = {r["product_id"]: r for r in (await api.get("/windows/me/stats", headers=promoter)).json()}
        # three exposures from one viewer count once, the second viewer's once, the limited click not at all
        assert (stats[demo.product_id]["exposures"], stats[demo.product_id]["clicks"]) == (2, 0)
    finally:
        stack.state.viewer_limits = ViewerLimits(settings)
