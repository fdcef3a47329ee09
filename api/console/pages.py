"""The operations console's pages (/console): Jinja2 templates, htmx for the decisions.

Every decision and change goes through the API (session.call_api) with the signed-in user's
own token: the console adds no rule of its own, and a decision reaches the waiting workflow the
way the API's does (a Temporal update). Each action is written to the staff audit trail."""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, or_, select, text

from api.access import public
from api.auth import PLATFORM_STAFF, Principal, hash_password
from api.console import queues
from api.console.session import (
    CONSOLE_ROLES,
    COOKIE,
    LOGIN_COOKIE,
    answer_text,
    audit,
    call_api,
    check_csrf,
    csrf_token,
    new_login_nonce,
    principal_of,
)
from api.deps import sessions_of
from api.errors import ApiError
from db.console_models import StaffAudit
from db.models import (
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    Order,
    Promoter,
    Supplier,
    User,
)
from domain.dashboards import (
    DIM_LABELS,
    GRAIN_LABELS,
    LABELS,
    Dim,
    Grain,
    percent,
    yuan,
)

# The pages sit behind the console's own session cookie (api/console/session.py: login through
# POST /auth/token, CSRF on every post); each action then calls the API with the user's own
# token, where the route's role declaration applies.
router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(public(
    "console pages: the console's session cookie decides, and every action goes through the API's own routes"))])
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.globals.update(yuan=yuan, percent=percent, LABELS=LABELS, DIM_LABELS=DIM_LABELS,
                             GRAIN_LABELS=GRAIN_LABELS)
ROLE_LABELS = {"support": "客服", "operator": "运营", "supplier": "供应商", "outlet_staff": "门店核销员",
               "buyer": "买家", "promoter": "推客"}
templates.env.globals["ROLE_LABELS"] = ROLE_LABELS
templates.env.globals["DECISION_LABELS"] = {"approve": "通过", "reject": "驳回", "more_info": "补充材料",
                                            "cleared": "无异常", "confirmed": "确认异常"}
# chart data: fen as yuan, basis points as percent
templates.env.globals["yuans"] = lambda rows, m: [round(r[m] / 100, 2) for r in rows]
templates.env.globals["rates"] = lambda rows, m: [None if r[m] is None else round(r[m] / 100, 2) for r in rows]


def _page(request: Request, name: str, principal: Principal | None, **context) -> HTMLResponse:
    settings = request.app.state.settings
    return templates.TemplateResponse(request, name, {
        "principal": principal, "csrf": csrf_token(request) if principal else "",
        "temporal_ui": settings.resolved_temporal_ui_url(), "namespace": settings.temporal_namespace,
        "link": lambda query: queues.temporal_link(settings.resolved_temporal_ui_url(),
                                                   settings.temporal_namespace, query) if query else "",
        **context})


def _back(path: str, **params: str) -> RedirectResponse:
    """Back to a page after a form post, with its message or error (Post/Redirect/Get)."""
    return RedirectResponse(f"{path}?{urlencode(params)}" if params else path, status_code=303)


def _need(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise ApiError(403, "FORBIDDEN", f"this page needs one of the roles: {', '.join(roles)}")


def _db(request: Request, work):
    def run():
        with sessions_of(request)() as s:
            return work(s)
    return run_in_threadpool(run)


# --- login --------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, error: str = "") -> HTMLResponse:
    nonce = new_login_nonce()
    response = _page(request, "login.html", None, nonce=nonce, error=error)
    response.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/console",
                        secure=request.app.state.settings.console_cookie_secure)
    return response


@router.post("/login")
async def login(request: Request, username: str = Form(...), password: str = Form(...), nonce: str = Form(...)):
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not secrets.compare_digest(expected, nonce):
        return _back("/console/login", error="表单已过期，请重试")
    answer = await call_api(request, "POST", "/auth/token", json={"username": username, "password": password})
    if answer.status_code != 200:
        return _back("/console/login", error="用户名或密码错误")
    body = answer.json()
    if body["role"] not in CONSOLE_ROLES:
        return _back("/console/login", error="此账号不能使用运营后台")
    response = RedirectResponse("/console", status_code=303)
    settings = request.app.state.settings
    response.set_cookie(COOKIE, body["access_token"], httponly=True, samesite="strict", path="/",
                        max_age=int(settings.jwt_ttl.total_seconds()), secure=settings.console_cookie_secure)
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request):
    principal_of(request)
    await check_csrf(request)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("")
def home(request: Request):
    principal = principal_of(request)
    return RedirectResponse("/console/supplier" if principal.role == "supplier" else "/console/queues", status_code=303)


# --- queues ---------------------------------------------------------------------------------
@router.get("/queues", response_class=HTMLResponse)
async def queues_page(request: Request) -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    found = await _db(request, queues.all_queues)
    settings = request.app.state.settings
    return _page(request, "queues.html", principal, queues=found, now=queues.now(),
                 fee_min=settings.supplier_service_fee_bps_min, fee_max=settings.supplier_service_fee_bps_max)


def _decision_call(queue: str, key: str, decision: str, reason: str, fee_bps: int | None):
    """(audit action, subject type, method, API path, body) of one decision."""
    approve = decision == "approve"
    if queue == "suppliers":
        body = {"action": decision, "reason": reason or None}
        if approve:
            body["service_fee_bps"] = fee_bps
        return f"supplier.{decision}", "supplier", "POST", f"/suppliers/{int(key)}/review", body
    if queue == "products":
        return f"product.{decision}", "product", "POST", f"/products/{int(key)}/review", \
            {"action": decision, "reason": reason or None}
    if queue == "edits":
        return f"product_edit.{decision}", "product_edit", "POST", f"/product-edits/{int(key)}/review", \
            {"action": decision, "reason": reason or None}
    if queue == "reviews":
        return f"review.{decision}", "review", "POST", f"/reviews/{int(key)}/moderation", \
            {"action": decision, "reason": reason or ("内容合规" if approve else "含违规用语")}
    if queue == "refunds":
        return f"refund.{decision}", "refund", "POST", f"/refunds/{key}/review", {"approve": approve, "note": reason}
    if queue == "withdrawals":
        return f"withdrawal.{decision}", "withdrawal", "POST", f"/withdrawals/{int(key)}/review", \
            {"approve": approve, "note": reason}
    if queue == "statements":
        month, promoter_id = key.split("/")
        return f"statement.{decision}", "statement", "POST", \
            f"/settlements/runs/settlement-commission-{month}/statements/{int(promoter_id)}/review", \
            {"approve": approve, "note": reason}
    if queue == "revivals" and approve:
        return "revival.approve", "promoter", "POST", f"/promoters/{int(key)}/revival/approve", \
            {"note": reason or "客服批准复活"}
    if queue == "risk" and decision in ("cleared", "confirmed"):
        return f"risk.{decision}", "risk_flag", "POST", f"/risk/flags/{int(key)}/review", \
            {"status": decision, "note": reason or ("无异常" if decision == "cleared" else "确认异常")}
    if queue == "stalled" and key.startswith("refund:"):
        return f"refund.resolve.{decision}", "refund", "POST", f"/refunds/{key.removeprefix('refund:')}/resolve", \
            {"approve": approve, "note": reason}
    raise ApiError(422, "INVALID_DECISION", f"{decision} is not a decision of the {queue} queue")


@router.post("/queues/{queue}/{key:path}/decide", response_class=HTMLResponse)
async def decide(request: Request, queue: str, key: str, decision: str = Form(...), reason: str = Form(""),
                 service_fee_bps: int | None = Form(None)) -> HTMLResponse:
    principal = principal_of(request)
    await check_csrf(request)
    try:
        action, subject, method, path, body = _decision_call(queue, key, decision, reason.strip(), service_fee_bps)
    except ValueError as err:
        raise ApiError(422, "INVALID_DECISION", f"bad item key {key}") from err
    answer = await call_api(request, method, path, json=body)
    await audit(request, principal, action, subject, key, reason, answer, detail={"path": path})
    ok = answer.status_code < 400
    status = ""
    if ok:
        result = answer.json()
        status = str(result.get("status", "")) if isinstance(result, dict) else ""
    return _page(request, "_decided.html", principal, ok=ok, key=key, queue=queue, decision=decision,
                 status=status, message="" if ok else answer_text(answer))


# --- look-ups --------------------------------------------------------------------------------
@router.get("/lookup", response_class=HTMLResponse)
async def lookup(request: Request, kind: str = "order", q: str = "") -> HTMLResponse:
    principal = principal_of(request)
    q = q.strip()
    if kind == "order" and q:
        return RedirectResponse(f"/console/orders/{quote(q, safe='')}", status_code=303)
    _need(principal, *PLATFORM_STAFF)

    def search(s):
        if not q:
            return []
        number = int(q) if q.isdigit() else None
        if kind == "promoter":
            rows = s.execute(select(Promoter.id, Promoter.nickname, Promoter.status, Promoter.created_at).where(
                or_(Promoter.id == number, Promoter.nickname.ilike(f"%{q}%"))).order_by(Promoter.id).limit(50))
            return [dict(id=i, name=n, status=st, created_at=c, href=f"/console/promoters/{i}") for i, n, st, c in rows]
        if kind == "supplier":
            rows = s.execute(select(Supplier.id, Supplier.name, Supplier.status, Supplier.created_at).where(
                or_(Supplier.id == number, Supplier.name.ilike(f"%{q}%"))).order_by(Supplier.id).limit(50))
            return [dict(id=i, name=n, status=st, created_at=c, href=f"/console/suppliers/{i}") for i, n, st, c in rows]
        rows = s.execute(select(User.id, User.display_name, User.role, User.created_at).where(
            User.role.in_(("buyer", "promoter")), or_(User.id == number, User.display_name.ilike(f"%{q}%")))
            .order_by(User.id).limit(50))
        return [dict(id=i, name=n, status=ROLE_LABELS.get(r, r), created_at=c, href=f"/console/buyers/{i}")
                for i, n, r, c in rows]

    results = await _db(request, search)
    return _page(request, "lookup.html", principal, kind=kind, q=q, results=results)


def _ledger(s, *, order_no: str | None = None, owner: tuple[str, int] | None = None, limit: int = 100) -> list[dict]:
    query = (select(LedgerEntry.created_at, LedgerTransaction.kind, LedgerTransaction.idempotency_key,
                    LedgerAccount.code, LedgerEntry.amount_fen, LedgerEntry.tier, LedgerTransaction.memo)
             .join(LedgerTransaction, LedgerTransaction.id == LedgerEntry.transaction_id)
             .join(LedgerAccount, LedgerAccount.id == LedgerEntry.account_id))
    if order_no:
        query = query.where(LedgerTransaction.order_no == order_no)
    if owner:
        query = query.where(LedgerAccount.owner_type == owner[0], LedgerAccount.owner_id == owner[1])
    rows = s.execute(query.order_by(LedgerEntry.id.desc()).limit(limit))
    return [dict(at=a, kind=k, key=key, account=c, amount_fen=amt, tier=t, memo=m) for a, k, key, c, amt, t, m in rows]


@router.get("/orders/{order_no}", response_class=HTMLResponse)
async def order_page(request: Request, order_no: str) -> HTMLResponse:
    principal = principal_of(request)
    answer = await call_api(request, "GET", f"/orders/{order_no}")
    order = answer.json() if answer.status_code == 200 else None
    refunds, ledger = [], []
    if order is not None:
        got = await call_api(request, "GET", "/refunds", params={"order_no": order_no, "limit": 100})
        refunds = got.json() if got.status_code == 200 else []
        if principal.role in PLATFORM_STAFF:
            ledger = await _db(request, lambda s: _ledger(s, order_no=order_no))
    return _page(request, "order.html", principal, order=order, order_no=order_no, refunds=refunds, ledger=ledger,
                 error="" if order else answer_text(answer))


@router.get("/promoters/{promoter_id}", response_class=HTMLResponse)
async def promoter_page(request: Request, promoter_id: int) -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)

    def load(s):
        promoter = s.get(Promoter, promoter_id)
        if promoter is None:
            return None
        accounts = s.execute(select(LedgerAccount.code, LedgerAccount.balance_fen).where(
            LedgerAccount.owner_type == "promoter", LedgerAccount.owner_id == promoter_id)).all()
        orders = s.execute(select(Order.order_no, Order.status, Order.total_fen, Order.created_at).where(
            Order.promoter_id == promoter_id).order_by(Order.created_at.desc()).limit(20)).all()
        counted = s.scalar(select(func.count()).select_from(Order).where(Order.promoter_id == promoter_id))
        revivals = s.execute(text("SELECT n, status, started_at, deadline, completed_orders, target_orders FROM revivals "
                                  "WHERE promoter_id = :p ORDER BY n DESC"), {"p": promoter_id}).all()
        return dict(promoter=promoter, accounts=accounts, orders=orders, order_count=counted, revivals=revivals,
                    ledger=_ledger(s, owner=("promoter", promoter_id), limit=50))

    found = await _db(request, load)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"promoter {promoter_id} not found")
    return _page(request, "promoter.html", principal, **found)


@router.get("/buyers/{user_id}", response_class=HTMLResponse)
async def buyer_page(request: Request, user_id: int) -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)

    def load(s):
        user = s.get(User, user_id)
        if user is None or user.role not in ("buyer", "promoter"):
            return None
        orders = s.execute(select(Order.order_no, Order.status, Order.total_fen, Order.created_at).where(
            Order.buyer_user_id == user_id).order_by(Order.created_at.desc()).limit(50)).all()
        flags = s.execute(text("SELECT id, kind, status, created_at FROM risk_flags WHERE buyer_user_id = :u "
                               "ORDER BY id DESC LIMIT 20"), {"u": user_id}).all()
        refunds = s.execute(text("SELECT refund_no, order_no, status, amount_fen FROM refunds WHERE buyer_user_id = :u "
                                 "ORDER BY created_at DESC LIMIT 20"), {"u": user_id}).all()
        return dict(user=user, orders=orders, flags=flags, refunds=refunds)

    found = await _db(request, load)
    if found is None:
        raise ApiError(404, "NOT_FOUND", f"buyer {user_id} not found")
    return _page(request, "buyer.html", principal, **found)


@router.get("/suppliers/{supplier_id}", response_class=HTMLResponse)
async def supplier_page(request: Request, supplier_id: int) -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    answer = await call_api(request, "GET", f"/suppliers/{supplier_id}")
    if answer.status_code != 200:
        raise ApiError(answer.status_code, "NOT_FOUND", answer_text(answer))

    def load(s):
        products = s.execute(text("SELECT id, title, category, status FROM products WHERE supplier_id = :i "
                                  "ORDER BY id LIMIT 200"), {"i": supplier_id}).all()
        return dict(products=products, ledger=_ledger(s, owner=("supplier", supplier_id), limit=50))

    return _page(request, "supplier_detail.html", principal, supplier=answer.json(), **(await _db(request, load)))


# --- dashboards -------------------------------------------------------------------------------
@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(request: Request, grain: Grain = Grain.DAY, dim: Dim = Dim.CATEGORY,
                         until: date | None = None) -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    params = {"grain": grain.value, "periods": {"day": 30, "week": 12, "month": 12}[grain.value]}
    if until:
        params["until"] = until.isoformat()
    overview = (await call_api(request, "GET", "/dashboards/platform", params=params)).json()
    period = overview["current"]["period_start"]
    table = (await call_api(request, "GET", "/dashboards/platform/breakdown",
                            params={"dim": dim.value, "grain": grain.value, "period": period})).json()
    tiers = (await call_api(request, "GET", "/dashboards/platform/breakdown",
                            params={"dim": "tier", "grain": grain.value, "period": period})).json()
    return _page(request, "dashboard.html", principal, overview=overview, grain=grain, dim=dim, table=table,
                 tiers=tiers, period=period, until=until, dims=[d for d in Dim if d not in (Dim.ALL,)])


@router.get("/supplier", response_class=HTMLResponse)
async def supplier_dashboard(request: Request, grain: Grain = Grain.DAY, supplier_id: int | None = None,
                             until: date | None = None) -> HTMLResponse:
    principal = principal_of(request)
    params = {"grain": grain.value, "periods": {"day": 30, "week": 12, "month": 12}[grain.value]}
    if supplier_id is not None:
        params["supplier_id"] = supplier_id
    if until:
        params["until"] = until.isoformat()
    answer = await call_api(request, "GET", "/dashboards/supplier", params=params)
    if answer.status_code != 200:
        raise ApiError(answer.status_code, "DASHBOARD_REFUSED", answer_text(answer))
    return _page(request, "supplier.html", principal, data=answer.json(), grain=grain, until=until,
                 supplier_id=supplier_id)


EXPORTS = {"platform", "platform/breakdown", "supplier", "promoter"}


@router.get("/export/{kind:path}")
async def export(request: Request, kind: str) -> Response:
    """The dashboards' CSV (or JSON) for a signed-in browser: the same /dashboards endpoint,
    called with the session's token (a link cannot carry a bearer header)."""
    principal_of(request)
    if kind not in EXPORTS:
        raise ApiError(404, "NOT_FOUND", f"no export {kind}")
    params = dict(request.query_params)
    params.setdefault("format", "csv")
    answer = await call_api(request, "GET", f"/dashboards/{kind}", params=params)
    headers = {k: v for k, v in answer.headers.items() if k.lower() in ("content-disposition",)}
    return Response(answer.content, status_code=answer.status_code, headers=headers,
                    media_type=answer.headers.get("content-type"))


# --- staff tools: commission policy, users, audit --------------------------------------------
@router.get("/policy", response_class=HTMLResponse)
async def policy_page(request: Request, message: str = "", error: str = "") -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    history = (await call_api(request, "GET", "/commission-policy")).json()
    return _page(request, "policy.html", principal, history=history, message=message, error=error)


@router.post("/policy")
async def policy_change(request: Request, tiers: int = Form(...), tier_rates: str = Form(...),
                        self_purchase_commission: bool = Form(False), reason: str = Form(...)):
    principal = principal_of(request)
    await check_csrf(request)
    try:
        rates = [int(x) for x in tier_rates.replace("，", ",").split(",") if x.strip()]
    except ValueError:
        rates = None
    if rates is None:
        return _back("/console/policy", error="各层比例须为整数基点，用逗号分隔")
    body = {"tiers": tiers, "tier_rates_bps": rates, "self_purchase_commission": self_purchase_commission,
            "note": reason[:200]}
    answer = await call_api(request, "PUT", "/commission-policy", json=body)
    version = answer.json().get("version") if answer.status_code == 200 else None
    await audit(request, principal, "policy.commission", "policy", str(version or "-"), reason, answer, detail=body)
    if answer.status_code != 200:
        return _back("/console/policy", error=f"{answer_text(answer)}")
    return _back("/console/policy", message=f"已生效：版本 {version}")


STAFF_ACCOUNT_ROLES = ("support", "operator", "outlet_staff")


@router.get("/users", response_class=HTMLResponse)
async def users_page(request: Request, message: str = "", error: str = "") -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, "operator")
    users = await _db(request, lambda s: s.scalars(select(User).where(
        User.role.in_(("support", "operator", "outlet_staff", "supplier"))).order_by(User.id)).all())
    return _page(request, "users.html", principal, users=users, message=message, error=error,
                 roles=STAFF_ACCOUNT_ROLES)


@router.post("/users")
async def create_user(request: Request, username: str = Form(...), role: str = Form(...),
                      display_name: str = Form(""), reason: str = Form(...)):
    principal = principal_of(request)
    _need(principal, "operator")
    await check_csrf(request)
    if role not in STAFF_ACCOUNT_ROLES or not (3 <= len(username) <= 64) or not username.replace("_", "").isalnum():
        return _back("/console/users", error="用户名须为3-64位字母数字，角色须为客服/运营/核销员")
    password = secrets.token_urlsafe(12)

    def write():
        with sessions_of(request).begin() as s:
            if s.scalar(select(User.id).where(User.username == username)):
                return None
            user = User(role=role, username=username, display_name=(display_name or username)[:64],
                        password_hash=hash_password(password))
            s.add(user)
            s.flush()
            return user.id

    user_id = await run_in_threadpool(write)
    await audit(request, principal, "user.create", "user", str(user_id or username), reason, ok=user_id is not None,
                detail={"role": role, "username": username})
    if user_id is None:
        return _back("/console/users", error="用户名已被占用")
    return _back("/console/users", message=f"已创建 {username}，初始密码 {password}（只显示一次）")


@router.post("/users/{user_id}/{action}")
async def change_user(request: Request, user_id: int, action: str, reason: str = Form(...)):
    principal = principal_of(request)
    _need(principal, "operator")
    await check_csrf(request)
    if action not in ("disable", "enable", "reset"):
        raise ApiError(404, "NOT_FOUND", f"no user action {action}")
    if user_id == principal.user_id and action == "disable":
        return _back("/console/users", error="不能停用自己的账号")
    password = secrets.token_urlsafe(12)

    def write():
        with sessions_of(request).begin() as s:
            user = s.get(User, user_id, with_for_update=True)
            if user is None or user.role not in ("support", "operator", "outlet_staff", "supplier"):
                return False
            if action == "reset":
                user.password_hash = hash_password(password)
            else:
                user.active = action == "enable"
            return True

    done = await run_in_threadpool(write)
    await audit(request, principal, f"user.{action}", "user", str(user_id), reason, ok=done)
    if not done:
        return _back("/console/users", error="没有这个员工账号")
    note = f"已重置，新密码 {password}（只显示一次）" if action == "reset" else "已更新"
    return _back("/console/users", message=f"{note}")


@router.post("/buyers/{user_id}/{action}")
async def change_buyer(request: Request, user_id: int, action: str, reason: str = Form(...)):
    """Support and operators disable (or enable again) a buyer's or promoter's account: a
    disabled account can no longer sign in with WeChat (POST /auth/wechat refuses it)."""
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    await check_csrf(request)
    if action not in ("disable", "enable") or not reason.strip():
        raise ApiError(422, "INVALID_DECISION", "disable or enable, with a reason")

    def write() -> bool:
        with sessions_of(request).begin() as s:
            user = s.get(User, user_id, with_for_update=True)
            if user is None or user.role not in ("buyer", "promoter"):
                return False
            user.active = action == "enable"
            return True

    done = await run_in_threadpool(write)
    await audit(request, principal, f"account.{action}", "user", str(user_id), reason, ok=done)
    if not done:
        raise ApiError(404, "NOT_FOUND", f"buyer {user_id} not found")
    return RedirectResponse(f"/console/buyers/{user_id}", status_code=303)


SECRET_WORDS = ("secret", "key", "password", "private", "serial", "mchid", "appid", "token", "url", "path")


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request) -> HTMLResponse:
    """The knobs in force (periods, thresholds, limits), read-only: they are set in the
    environment and take effect on restart. Secrets, keys and endpoints are not shown."""
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    settings = request.app.state.settings
    rows = [(name, getattr(settings, name), field.description or "")
            for name, field in type(settings).model_fields.items()
            if not any(word in name for word in SECRET_WORDS)]
    return _page(request, "settings.html", principal, rows=rows)


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(request: Request, actor: int | None = None, action: str = "") -> HTMLResponse:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)

    def load(s):
        query = select(StaffAudit, User.username).outerjoin(User, User.id == StaffAudit.actor_user_id)
        if actor is not None:
            query = query.where(StaffAudit.actor_user_id == actor)
        if action:
            query = query.where(StaffAudit.action.startswith(action))
        return s.execute(query.order_by(StaffAudit.id.desc()).limit(200)).all()

    rows = await _db(request, load)
    return _page(request, "audit.html", principal, rows=rows, actor=actor, action=action)


@router.get("/audit.csv")
async def audit_csv(request: Request) -> Response:
    principal = principal_of(request)
    _need(principal, *PLATFORM_STAFF)
    import csv
    import io

    rows = await _db(request, lambda s: s.scalars(select(StaffAudit).order_by(StaffAudit.id.desc()).limit(10_000)).all())
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(["时间", "操作人", "角色", "操作", "对象", "对象ID", "原因", "结果"])
    for r in rows:
        writer.writerow([r.at.isoformat(), r.actor_user_id, r.actor_role, r.action, r.subject_type, r.subject_id,
                         r.reason, r.outcome])
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="audit.csv"'})
