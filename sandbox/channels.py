"""WeChat Channels shop (视频号小店) on its wire protocol, plus access tokens and subscribe messages.

Like every api.weixin.qq.com API: `?access_token=` on the query string, JSON bodies, HTTP 200
with `{errcode, errmsg}` (0 / "ok" on success). Tokens come from `GET /cgi-bin/token` or
`POST /cgi-bin/stable_token` and live 7200 s; a bad one is 40001, an expired one 42001, a missing
one 41001. The Channels shop app, the official account and the mini program can get tokens.

Shop: products (add/update/get/list, listing/delisting with edit_status audit), window (橱窗)
products of a promoter, orders with real status codes (10 待付款, 20 待发货, 21 部分发货,
30 待收货, 100 完成, 200 售后取消, 250 未付款取消), delivery, after-sale (list by update time,
get, accept, reject; a return is accepted twice: to let the buyer send it, then on receipt).
Order and after-sale changes are pushed in security mode (AES-256-CBC, msg_signature) to the URL
set with `PUT /sandbox/channels/push`, which can also lose, duplicate or hold (then release in
reverse order) pushes. Controls under `/sandbox/channels/...` play buyers.

Error codes: token and argument errors are WeChat's (40001, 41001, 42001, 40013, 40125, 47001,
40003, 43101, 40037); product, window and after-sale codes are the shop's documented ones; the
order codes (100200xx) are the sandbox's own stand-ins. Accepting a return the first time needs
the merchant's return address (address_id, 10021060 without it), as the real API does.
"""

from __future__ import annotations

import json
import secrets
import string
import time
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, ValidationError

from sandbox import push_crypto
from sandbox.context import Sandbox

TOKEN = "wechat.access_token"
STABLE = "wechat.stable_token"
PRODUCT = "channels.product"
WINDOW = "channels.window"
ORDER = "channels.order"
AFTERSALE = "channels.aftersale"
PUSH = "channels.push"
SUBSCRIPTION = "messages.subscription"
MESSAGE = "messages.sent"
COUNTER = "sandbox.counter"
TOKEN_TTL = 7200

OK = {"errcode": 0, "errmsg": "ok"}
# Shop business errors. Product and window codes are WeChat's documented ones (product/delisting,
# windowproduct/off); the order and after-sale codes are stand-ins (not documented per API).
PRODUCT_NOT_FOUND = (10020052, "商品不存在")
PRODUCT_NOT_AUDITED = (10020047, "商品正在审核中")
PRODUCT_NOT_ON_SALE = (10020065, "商品未上架")
WINDOW_NOT_FOUND = (10022003, "橱窗商品未找到")
ORDER_NOT_FOUND = (10020003, "order not exist")
ORDER_STATUS_WRONG = (10020004, "order status not allow this operation")
# after-sale codes are the ones acceptapply documents (视频号小店 API, 售后 / 同意售后)
AFTERSALE_NOT_FOUND = (10021050, "售后单不存在")
AFTERSALE_STATUS_WRONG = (10021041, "当前售后单不支持此操作，请检查售后单状态")
RETURN_ADDRESS_MISSING = (10021060, "缺少退货地址address_id参数")
PUSH_URL_CHECK_FAILED = (10020010, "URL 校验失败: echostr 未原样返回")  # stand-in


class ApiError(Exception):
    def __init__(self, errcode: int, errmsg: str):
        super().__init__(errmsg)
        self.errcode, self.errmsg = errcode, errmsg


def _fail(err: tuple[int, str]) -> ApiError:
    return ApiError(*err)


def _next_id(sb: Sandbox, kind: str, start: int) -> str:
    counter = sb.store.get(COUNTER, kind) or {"n": start}
    counter["n"] += 1
    sb.store.put(COUNTER, kind, counter)
    return str(counter["n"])


# --- request bodies -------------------------------------------------------------------------


class StableTokenRequest(BaseModel):
    grant_type: str
    appid: str
    secret: str
    force_refresh: bool = False


class _Sku(BaseModel):
    out_sku_id: str | None = None
    sale_price: int = Field(gt=0)
    stock_num: int = Field(ge=0)
    thumb_img: str | None = None
    sku_attrs: list[dict[str, Any]] = Field(default_factory=list)


class ProductBody(BaseModel):
    product_id: str | None = None
    out_product_id: str | None = None
    title: str = Field(min_length=1, max_length=60)
    sub_title: str | None = None
    head_imgs: list[str] = Field(min_length=1, max_length=9)
    desc_info: dict[str, Any] = Field(default_factory=dict)
    cats_v2: list[dict[str, Any]] = Field(default_factory=list)
    deliver_method: int = 0
    skus: list[_Sku] = Field(min_length=1)


class ProductIdBody(BaseModel):
    product_id: str


class ProductGetBody(BaseModel):
    product_id: str
    data_type: Literal[1, 2, 3] = 1


class ListBody(BaseModel):
    status: int | None = None
    page_size: int = Field(default=10, ge=1, le=30)
    next_key: str | None = None


class WindowBody(BaseModel):
    appid: str
    product_id: str
    is_hide_for_window: bool | None = None
    # Which promoter's window (the 视频号 finder_id, as the 机构/团长 window API takes it); empty:
    # the window of the account the token belongs to.
    finder_id: str | None = None


class WindowListBody(BaseModel):
    """获取已添加到橱窗的商品列表 (https://developers.weixin.qq.com/doc/channels/API/windowproduct/list_get.html):
    page_size (≤ 200), page_index (from 1), last_buffer (from the previous answer; then page_index is
    ignored), need_total_num; the answer is products, last_buffer and, when asked for, total_num."""

    appid: str | None = None
    finder_id: str | None = None
    page_size: int = Field(ge=1, le=200)
    page_index: int = Field(default=1, ge=1)
    last_buffer: str | None = None
    need_total_num: bool = False


class OrderIdBody(BaseModel):
    order_id: str


class OrderListBody(BaseModel):
    create_time_range: dict[str, int] | None = None
    update_time_range: dict[str, int] | None = None
    status: int | None = None
    openid: str | None = None
    page_size: int = Field(default=10, ge=1, le=100)
    next_key: str | None = None


class _DeliveryProduct(BaseModel):
    product_id: str
    sku_id: str
    product_cnt: int = Field(gt=0)


class _Delivery(BaseModel):
    delivery_id: str = Field(min_length=1)
    waybill_id: str = Field(min_length=1)
    deliver_type: int = 1
    product_infos: list[_DeliveryProduct] = Field(min_length=1)


class DeliveryBody(BaseModel):
    order_id: str
    delivery_list: list[_Delivery] = Field(min_length=1)


class AftersaleIdBody(BaseModel):
    after_sale_order_id: str


class AftersaleAcceptBody(AftersaleIdBody):
    address_id: str | None = None   # the merchant's return address (地址管理), for a return
    accept_type: int | None = None  # 1 accept the return, 2 refund (received / refund only); none: by status


class AftersaleListBody(BaseModel):
    """获取售后单列表: a create-time or an update-time range (pairs), at most 24 hours."""

    begin_create_time: int | None = None
    end_create_time: int | None = None
    begin_update_time: int | None = None
    end_update_time: int | None = None
    next_key: str | None = None


class AftersaleRejectBody(BaseModel):
    after_sale_order_id: str
    reject_reason: str | None = None
    reject_reason_type: int | None = None


class SubscribeSendBody(BaseModel):
    touser: str = Field(min_length=1)
    template_id: str = Field(min_length=1)
    page: str | None = None
    data: dict[str, dict[str, str]]
    miniprogram_state: Literal["developer", "trial", "formal"] | None = None
    lang: str | None = None


# control bodies


class NewOrderBody(BaseModel):
    openid: str
    product_id: str
    sku_id: str | None = None
    count: int = Field(default=1, gt=0)
    promoter_appid: str | None = Field(default=None, description="the window (橱窗) the sale came from")
    finder_id: str | None = Field(default=None, description="the 视频号 (finder) whose window the buyer bought from")


class NewAftersaleBody(BaseModel):
    order_id: str
    type: Literal["REFUND", "RETURN"] = "REFUND"
    amount: int | None = None
    reason: str = "不想要了"


class PushConfig(BaseModel):
    url: str | None = None
    lose: int = Field(default=0, ge=0, description="the next N pushes are lost (never sent)")
    duplicate: bool = Field(default=False, description="every push is sent twice")
    hold: bool = Field(default=False, description="pushes are held until POST /sandbox/channels/push/release, "
                                                  "which sends them newest first")


class SubscriptionBody(BaseModel):
    openid: str
    template_id: str
    count: int = Field(default=1, ge=1)


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    apps = {creds.channels_appid: creds.channels_secret, creds.appid: creds.app_secret,
            creds.miniprogram_appid: creds.miniprogram_secret}
    router = APIRouter(tags=["wechat api / channels shop"])
    control = APIRouter(prefix="/sandbox", tags=["sandbox controls"])

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        from fastapi.responses import JSONResponse

        return JSONResponse({"errcode": exc.errcode, "errmsg": exc.errmsg})

    def issue(appid: str) -> dict[str, Any]:
        token = "".join(secrets.choice(string.ascii_letters + string.digits + "_-") for _ in range(136))
        record = {"appid": appid, "expires_at": time.time() + TOKEN_TTL}
        sb.store.put(TOKEN, token, record)
        return {"access_token": token, "expires_in": TOKEN_TTL}

    def check_app(appid: str, secret: str) -> None:
        if appid not in apps:
            raise ApiError(40013, "invalid appid")
        if not secrets.compare_digest(secret, apps[appid]):
            raise ApiError(40125, "invalid appsecret")

    async def body_of(request: Request, model: type[BaseModel]) -> Any:
        token = request.query_params.get("access_token")
        if not token:
            raise ApiError(41001, "access_token missing")
        record = sb.store.get(TOKEN, token)
        if record is None:
            raise ApiError(40001, "invalid credential, access_token is invalid or not latest")
        if record["expires_at"] <= time.time():
            raise ApiError(42001, "access_token expired")
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError as e:
            err = e.errors()[0]
            raise ApiError(47001, f"data format error: {'.'.join(str(p) for p in err['loc'])} {err['msg']}") from None

    # --- tokens ---------------------------------------------------------------------------

    @router.get("/cgi-bin/token")
    async def token(grant_type: str = "", appid: str = "", secret: str = ""):
        if grant_type != "client_credential":
            raise ApiError(40002, "invalid grant_type")
        check_app(appid, secret)
        return issue(appid)

    @router.post("/cgi-bin/stable_token")
    async def stable_token(request: Request):
        try:
            req = StableTokenRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError:
            raise ApiError(47001, "data format error") from None
        if req.grant_type != "client_credential":
            raise ApiError(40002, "invalid grant_type")
        check_app(req.appid, req.secret)
        current = sb.store.get(STABLE, req.appid)
        if current and not req.force_refresh:
            record = sb.store.get(TOKEN, current["token"])
            if record and record["expires_at"] > time.time():
                return {"access_token": current["token"], "expires_in": int(record["expires_at"] - time.time())}
        out = issue(req.appid)
        sb.store.put(STABLE, req.appid, {"token": out["access_token"]})
        return out

    # --- products -------------------------------------------------------------------------

    def product(product_id: str) -> dict[str, Any]:
        found = sb.store.get(PRODUCT, product_id)
        if found is None:
            raise _fail(PRODUCT_NOT_FOUND)
        return found

    def product_view(p: dict[str, Any], which: str) -> dict[str, Any]:
        data = p[which]
        return {
            "product_id": p["product_id"], "out_product_id": data.get("out_product_id") or "",
            "title": data["title"], "sub_title": data.get("sub_title") or "",
            "head_imgs": data["head_imgs"], "desc_info": data.get("desc_info", {}),
            "cats_v2": data.get("cats_v2", []), "deliver_method": data.get("deliver_method", 0),
            "skus": data["skus"], "status": p["status"], "edit_status": p["edit_status"],
            "min_price": min(s["sale_price"] for s in data["skus"]),
            "create_time": p["create_time"], "update_time": p["update_time"],
        }

    def skus_with_ids(skus: list[_Sku], previous: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        out = []
        for i, s in enumerate(skus):
            sku = s.model_dump(exclude_none=True)
            sku["sku_id"] = previous[i]["sku_id"] if previous and i < len(previous) else _next_id(sb, "channels.sku", 2000000000)
            out.append(sku)
        return out

    @router.post("/channels/ec/product/add")
    async def product_add(request: Request):
        req: ProductBody = await body_of(request, ProductBody)
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        pid = _next_id(sb, "channels.product", 10000000000000)
        data = {**req.model_dump(exclude={"product_id", "skus"}, exclude_none=True), "skus": skus_with_ids(req.skus)}
        # the sandbox's audit passes at once: edit_status 4 (审核成功); status 0 until listed
        sb.store.put(PRODUCT, pid, {"product_id": pid, "draft": data, "online": None, "status": 0,
                                    "edit_status": 4, "create_time": now, "update_time": now})
        return {**OK, "data": {"product_id": pid, "create_time": now}}

    @router.post("/channels/ec/product/update")
    async def product_update(request: Request):
        req: ProductBody = await body_of(request, ProductBody)
        if not req.product_id:
            raise ApiError(47001, "data format error: product_id required")
        p = product(req.product_id)
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        p["draft"] = {**req.model_dump(exclude={"product_id", "skus"}, exclude_none=True),
                      "skus": skus_with_ids(req.skus, p["draft"]["skus"])}
        p["edit_status"], p["update_time"] = 4, now
        if p["status"] == 5:  # an audited edit of a product on sale goes live
            p["online"] = p["draft"]
        sb.store.put(PRODUCT, req.product_id, p)
        return {**OK, "data": {"product_id": req.product_id, "update_time": now}}

    @router.post("/channels/ec/product/listing")
    async def product_listing(request: Request):
        req: ProductIdBody = await body_of(request, ProductIdBody)
        p = product(req.product_id)
        if p["edit_status"] != 4:
            raise _fail(PRODUCT_NOT_AUDITED)
        p["status"], p["online"] = 5, p["draft"]
        p["update_time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        sb.store.put(PRODUCT, req.product_id, p)
        return dict(OK)

    @router.post("/channels/ec/product/delisting")
    async def product_delisting(request: Request):
        req: ProductIdBody = await body_of(request, ProductIdBody)
        p = product(req.product_id)
        p["status"] = 11  # 自主下架
        p["update_time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        sb.store.put(PRODUCT, req.product_id, p)
        return dict(OK)

    @router.post("/channels/ec/product/get")
    async def product_get(request: Request):
        req: ProductGetBody = await body_of(request, ProductGetBody)
        p = product(req.product_id)
        out: dict[str, Any] = dict(OK)
        if req.data_type in (1, 3) and p["online"] is not None:
            out["product"] = product_view(p, "online")
        if req.data_type in (2, 3):
            out["edit_product"] = product_view(p, "draft")
        if req.data_type == 1 and p["online"] is None:
            out["product"] = product_view(p, "draft")  # never listed: the online copy is the draft
        return out

    def page(items: list[str], page_size: int, next_key: str | None) -> tuple[list[str], str, bool]:
        start = int(next_key) if next_key and next_key.isdigit() else 0
        chunk = items[start:start + page_size]
        end = start + len(chunk)
        return chunk, str(end), end < len(items)

    @router.post("/channels/ec/product/list/get")
    async def product_list(request: Request):
        req: ListBody = await body_of(request, ListBody)
        ids = sorted((p["product_id"] for p in sb.store.all(PRODUCT) if req.status is None or p["status"] == req.status), key=int)
        chunk, key, _ = page(ids, req.page_size, req.next_key)
        return {**OK, "product_ids": chunk, "next_key": key, "total_num": len(ids)}

    # --- window (橱窗) ----------------------------------------------------------------------

    def window_key(finder_id: str | None, appid: str, product_id: str) -> str:
        return f"{appid}:{product_id}" if not finder_id else f"{finder_id}:{appid}:{product_id}"

    def sales_of(product_id: str) -> int:
        """Units paid for (销量): orders past 待付款 and not cancelled before payment."""
        return sum(info["sku_cnt"] for o in sb.store.all(ORDER) if o["status"] not in (10, 250)
                   for info in o["order_detail"]["product_infos"] if info["product_id"] == product_id)

    def window_view(w: dict[str, Any]) -> dict[str, Any]:
        p = sb.store.get(PRODUCT, w["product_id"])
        data = (p or {}).get("online") or (p or {}).get("draft") or {}
        skus = data.get("skus", [])
        prices = [s["sale_price"] for s in skus]
        return {
            "appid": w["appid"], "product_id": w["product_id"], "out_product_id": data.get("out_product_id") or "",
            "finder_id": w.get("finder_id") or "", "title": data.get("title", ""),
            "img_url": (data.get("head_imgs") or [""])[0], "is_hide_for_window": w["is_hide_for_window"],
            "min_price": min(prices, default=0), "selling_price": min(prices, default=0),
            "stock": sum(s["stock_num"] for s in skus), "sales": sales_of(w["product_id"]),
            "status": (p or {}).get("status", 0), "banned": (p or {}).get("status") in (13, 20),
            "add_time": w["add_time"],
        }

    @router.post("/channels/ec/window/product/add")
    async def window_add(request: Request):
        req: WindowBody = await body_of(request, WindowBody)
        if req.appid != creds.channels_appid:
            raise ApiError(40013, "invalid appid")
        p = product(req.product_id)
        if p["status"] != 5:
            raise _fail(PRODUCT_NOT_ON_SALE)
        key = window_key(req.finder_id, req.appid, req.product_id)
        existing = sb.store.get(WINDOW, key)
        sb.store.put(WINDOW, key, {"appid": req.appid, "product_id": req.product_id,
                                   "finder_id": req.finder_id or "",
                                   "is_hide_for_window": bool(req.is_hide_for_window),
                                   "add_time": existing["add_time"] if existing else int(time.time())})
        return dict(OK)

    @router.post("/channels/ec/window/product/get")
    async def window_get(request: Request):
        req: WindowBody = await body_of(request, WindowBody)
        w = sb.store.get(WINDOW, window_key(req.finder_id, req.appid, req.product_id))
        if w is None:
            raise _fail(WINDOW_NOT_FOUND)
        return {**OK, "product": window_view(w)}

    @router.post("/channels/ec/window/product/list/get")
    async def window_list(request: Request):
        req: WindowListBody = await body_of(request, WindowListBody)
        items = sorted(
            (w for w in sb.store.all(WINDOW) if req.appid in (None, w["appid"])
             and (w.get("finder_id") or "") == (req.finder_id or "")),
            key=lambda w: int(w["product_id"]),
        )
        start = req.last_buffer if req.last_buffer else str((req.page_index - 1) * req.page_size)
        chunk, key, _ = page(list(range(len(items))), req.page_size, start)
        products = [{"appid": items[i]["appid"], "product_id": items[i]["product_id"]} for i in chunk]
        answer = {**OK, "products": products, "last_buffer": key}
        if req.need_total_num:
            answer["total_num"] = len(items)
        return answer

    @router.post("/channels/ec/window/product/off")
    async def window_off(request: Request):
        req: WindowBody = await body_of(request, WindowBody)
        key = window_key(req.finder_id, req.appid, req.product_id)
        if sb.store.get(WINDOW, key) is None:
            raise _fail(WINDOW_NOT_FOUND)
        sb.store.delete(WINDOW, key)
        return dict(OK)

    # --- orders ---------------------------------------------------------------------------

    def order(order_id: str) -> dict[str, Any]:
        found = sb.store.get(ORDER, order_id)
        if found is None:
            raise _fail(ORDER_NOT_FOUND)
        return found

    def touch(o: dict[str, Any], status: int | None = None) -> None:
        if status is not None:
            o["status"] = status
        o["update_time"] = int(time.time())
        sb.store.put(ORDER, o["order_id"], o)

    @router.post("/channels/ec/order/get")
    async def order_get(request: Request):
        req: OrderIdBody = await body_of(request, OrderIdBody)
        return {**OK, "order": order(req.order_id)}

    @router.post("/channels/ec/order/list/get")
    async def order_list(request: Request):
        req: OrderListBody = await body_of(request, OrderListBody)

        def within(value: int, rng: dict[str, int] | None) -> bool:
            return rng is None or rng.get("start_time", 0) <= value < rng.get("end_time", 2**62)

        ids = sorted(
            (o["order_id"] for o in sb.store.all(ORDER)
             if within(o["create_time"], req.create_time_range) and within(o["update_time"], req.update_time_range)
             and req.status in (None, o["status"]) and req.openid in (None, o["openid"])),
            key=int,
        )
        chunk, key, more = page(ids, req.page_size, req.next_key)
        return {**OK, "order_id_list": chunk, "next_key": key, "has_more": more}

    @router.post("/channels/ec/order/delivery/send")
    async def delivery_send(request: Request):
        req: DeliveryBody = await body_of(request, DeliveryBody)
        o = order(req.order_id)
        if o["status"] not in (20, 21):
            raise _fail(ORDER_STATUS_WRONG)
        ordered = {(p["product_id"], p["sku_id"]): p["sku_cnt"] for p in o["order_detail"]["product_infos"]}
        shipped = dict.fromkeys(ordered, 0)
        for d in o["order_detail"]["delivery_info"]["delivery_product_info"]:
            for p in d["product_infos"]:
                shipped[(p["product_id"], p["sku_id"])] += p["product_cnt"]
        for d in req.delivery_list:
            for p in d.product_infos:
                k = (p.product_id, p.sku_id)
                if k not in ordered or shipped[k] + p.product_cnt > ordered[k]:
                    raise ApiError(47001, f"data format error: product {p.product_id}/{p.sku_id} not in order or over count")
                shipped[k] += p.product_cnt
            o["order_detail"]["delivery_info"]["delivery_product_info"].append(d.model_dump())
        done = all(shipped[k] >= n for k, n in ordered.items())
        if done:
            o["order_detail"]["delivery_info"]["ship_done_time"] = int(time.time())
        touch(o, 30 if done else 21)
        await push(sb, "channels_ec_order_deliver", {"order_info": {"order_id": o["order_id"], "finish_delivery": int(done)}})
        return dict(OK)

    # --- after-sale -----------------------------------------------------------------------

    def aftersale(aid: str) -> dict[str, Any]:
        found = sb.store.get(AFTERSALE, aid)
        if found is None:
            raise _fail(AFTERSALE_NOT_FOUND)
        return found

    async def aftersale_changed(a: dict[str, Any]) -> None:
        a["update_time"] = int(time.time())
        sb.store.put(AFTERSALE, a["after_sale_order_id"], a)
        await push(sb, "channels_ec_aftersale_update", {"finder_shop_aftersale_status_update": {
            "status": a["status"], "after_sale_order_id": a["after_sale_order_id"], "order_id": a["order_id"]}})

    @router.post("/channels/ec/aftersale/getaftersaleorder")
    async def aftersale_get(request: Request):
        req: AftersaleIdBody = await body_of(request, AftersaleIdBody)
        return {**OK, "after_sale_order": aftersale(req.after_sale_order_id)}

    @router.post("/channels/ec/aftersale/getaftersalelist")
    async def aftersale_list(request: Request):
        req: AftersaleListBody = await body_of(request, AftersaleListBody)
        if req.begin_update_time is not None and req.end_update_time is not None:
            field, begin, end = "update_time", req.begin_update_time, req.end_update_time
        elif req.begin_create_time is not None and req.end_create_time is not None:
            field, begin, end = "create_time", req.begin_create_time, req.end_create_time
        else:
            raise ApiError(47001, "data format error: a create or an update time range is required")
        if not 0 <= end - begin <= 24 * 3600:
            raise ApiError(10020004, "非法的时间区间,不得大于24小时")
        ids = sorted((a["after_sale_order_id"] for a in sb.store.all(AFTERSALE) if begin <= a[field] < end), key=int)
        chunk, key, more = page(ids, 50, req.next_key)
        return {**OK, "after_sale_order_id_list": chunk, "next_key": key, "has_more": more}

    @router.post("/channels/ec/aftersale/acceptapply")
    async def aftersale_accept(request: Request):
        req: AftersaleAcceptBody = await body_of(request, AftersaleAcceptBody)
        a = aftersale(req.after_sale_order_id)
        if a["status"] not in ("MERCHANT_PROCESSING", "MERCHANT_WAIT_RECEIPT"):
            raise _fail(AFTERSALE_STATUS_WRONG)
        if a["type"] == "RETURN" and a["status"] == "MERCHANT_PROCESSING":
            if not req.address_id:
                raise _fail(RETURN_ADDRESS_MISSING)
            a["status"] = "USER_WAIT_RETURN"  # the buyer sends the goods back; accepted again on receipt
            a["details"]["return_address_id"] = req.address_id
        else:
            a["status"] = "MERCHANT_REFUND_SUCCESS"
            o = order(a["order_id"])
            refunded = sum(x["refund_info"]["amount"] for x in sb.store.all(AFTERSALE)
                           if x["order_id"] == a["order_id"] and x["status"] == "MERCHANT_REFUND_SUCCESS")
            if refunded + a["refund_info"]["amount"] >= o["order_detail"]["price_info"]["order_price"]:
                touch(o, 200)  # everything refunded after sale: the order is cancelled
        await aftersale_changed(a)
        return dict(OK)

    @router.post("/channels/ec/aftersale/rejectapply")
    async def aftersale_reject(request: Request):
        req: AftersaleRejectBody = await body_of(request, AftersaleRejectBody)
        a = aftersale(req.after_sale_order_id)
        if a["status"] != "MERCHANT_PROCESSING":
            raise _fail(AFTERSALE_STATUS_WRONG)
        a["status"] = "MERCHANT_REJECT_RETURN" if a["type"] == "RETURN" else "MERCHANT_REJECT_REFUND"
        a["details"]["reject_reason"] = req.reject_reason or ""
        await aftersale_changed(a)
        return dict(OK)

    # --- subscribe messages ---------------------------------------------------------------

    @router.post("/cgi-bin/message/subscribe/send")
    async def subscribe_send(request: Request):
        req: SubscribeSendBody = await body_of(request, SubscribeSendBody)
        if not req.touser.startswith("o") or len(req.touser) < 6:
            raise ApiError(40003, "invalid openid")
        if not req.template_id or len(req.template_id) < 8:
            raise ApiError(40037, "invalid template_id")
        if any("value" not in v for v in req.data.values()):
            raise ApiError(47003, "argument invalid! data.value empty")
        key = f"{req.touser}:{req.template_id}"
        sub = sb.store.get(SUBSCRIPTION, key)
        if not sub or sub["count"] <= 0:
            raise ApiError(43101, "user refuse to accept the msg")
        sub["count"] -= 1  # one-time subscription: each consent allows one message
        sb.store.put(SUBSCRIPTION, key, sub)
        msgid = _next_id(sb, "messages.msgid", 3000000000)
        sb.store.put(MESSAGE, msgid, {"msgid": msgid, **req.model_dump(exclude_none=True), "at": int(time.time())})
        return {**OK, "msgid": int(msgid)}

    # --- controls -------------------------------------------------------------------------

    @control.post("/channels/tokens/expire")
    async def expire_tokens():
        """Every access token expires now (the next call with one gets 42001)."""
        items = sb.store.items(TOKEN)
        for key, record in items:
            sb.store.put(TOKEN, key, {**record, "expires_at": 0})
        return {"expired": len(items)}

    @control.put("/channels/push")
    async def set_push(cfg: PushConfig):
        """Save the push URL as the shop's console does: WeChat first GETs it with signature,
        timestamp, nonce and echostr, and keeps the URL only if the echostr comes back."""
        verified = await check_url(sb, cfg.url) if cfg.url else None
        if verified is False:
            raise _fail(PUSH_URL_CHECK_FAILED)
        sb.store.put(PUSH, "config", cfg.model_dump())
        return {**cfg.model_dump(), "token": creds.channels_push_token, "verified": verified,
                "encoding_aes_key": creds.channels_encoding_aes_key, "appid": creds.channels_appid}

    @control.post("/channels/products/{product_id}/punish")
    async def punish_product(product_id: str, banned: bool = False):
        """The platform finds the product in violation: 违规下架 (13), or 封禁 (20) with banned=true."""
        p = product(product_id)
        p["status"] = 20 if banned else 13
        p["update_time"] = time.strftime("%Y-%m-%d %H:%M:%S")
        sb.store.put(PRODUCT, product_id, p)
        return {"product_id": product_id, "status": p["status"]}

    @control.post("/channels/orders")
    async def new_order(req: NewOrderBody):
        p = product(req.product_id)
        if p["status"] != 5:
            raise _fail(PRODUCT_NOT_ON_SALE)
        sku = next((s for s in p["online"]["skus"] if req.sku_id in (None, s["sku_id"])), None)
        if sku is None:
            raise ApiError(47001, "data format error: sku not found")
        now = int(time.time())
        oid = _next_id(sb, "channels.order", 3700000000000000000)
        price = sku["sale_price"] * req.count
        o = {
            "order_id": oid, "status": 10, "create_time": now, "update_time": now, "openid": req.openid,
            "order_detail": {
                "product_infos": [{"product_id": req.product_id, "sku_id": sku["sku_id"], "sku_cnt": req.count,
                                   "out_product_id": p["online"].get("out_product_id") or "",
                                   "out_sku_id": sku.get("out_sku_id") or "",
                                   "sale_price": sku["sale_price"], "title": p["online"]["title"],
                                   "thumb_img": p["online"]["head_imgs"][0]}],
                "price_info": {"product_price": price, "order_price": price, "freight": 0},
                "pay_info": {},
                "delivery_info": {"delivery_product_info": [], "address_info": {
                    "user_name": "张三", "tel_number": "13800000000", "province_name": "广东省", "city_name": "广州市",
                    "county_name": "天河区", "detail_info": "体育西路 1 号", "postal_code": "510000"}},
                "source_info": {"account_type": "channels", "sale_channel": 1 if req.promoter_appid else 0,
                                "promoter_appid": req.promoter_appid or ""},
                # 成交来源 per SKU: account_type 1 is a 视频号, account_id its finder id; sale_channel 4: 橱窗
                "source_infos": [{"sku_id": sku["sku_id"], "account_type": 1, "account_id": req.finder_id,
                                  "sale_channel": 4}] if req.finder_id else [],
            },
            "aftersale_detail": {"aftersale_order_list": [], "on_aftersale_order_cnt": 0},
        }
        sb.store.put(ORDER, oid, o)
        await push(sb, "channels_ec_order_new", {"order_info": {"order_id": oid}})
        return o

    @control.post("/channels/orders/{order_id}/pay")
    async def pay_order(order_id: str):
        o = order(order_id)
        if o["status"] != 10:
            raise _fail(ORDER_STATUS_WRONG)
        o["order_detail"]["pay_info"] = {"pay_time": int(time.time()),
                                         "transaction_id": "4200" + "".join(secrets.choice(string.digits) for _ in range(24))}
        touch(o, 20)
        await push(sb, "channels_ec_order_pay", {"order_info": {"order_id": order_id, "pay_time": o["order_detail"]["pay_info"]["pay_time"]}})
        return o

    @control.post("/channels/orders/{order_id}/cancel")
    async def cancel_order(order_id: str):
        o = order(order_id)
        if o["status"] != 10:
            raise _fail(ORDER_STATUS_WRONG)
        touch(o, 250)
        await push(sb, "channels_ec_order_cancel", {"order_info": {"order_id": order_id, "cancel_type": 1}})
        return o

    @control.post("/channels/orders/{order_id}/confirm")
    async def confirm_receipt(order_id: str):
        o = order(order_id)
        if o["status"] != 30:
            raise _fail(ORDER_STATUS_WRONG)
        touch(o, 100)
        await push(sb, "channels_ec_order_confirm", {"order_info": {"order_id": order_id, "confirm_type": 1}})
        return o

    @control.post("/channels/aftersales")
    async def new_aftersale(req: NewAftersaleBody):
        o = order(req.order_id)
        if o["status"] not in (20, 21, 30, 100):
            raise _fail(ORDER_STATUS_WRONG)
        info = o["order_detail"]["product_infos"][0]
        now = int(time.time())
        aid = _next_id(sb, "channels.aftersale", 4000000000000000000)
        a = {
            "after_sale_order_id": aid, "status": "MERCHANT_PROCESSING", "openid": o["openid"],
            "order_id": o["order_id"], "type": req.type, "create_time": now, "update_time": now,
            "product_info": {"product_id": info["product_id"], "sku_id": info["sku_id"], "count": info["sku_cnt"]},
            "details": {"desc": req.reason, "receive_product": o["status"] in (30, 100), "media_id_list": []},
            "refund_info": {"amount": req.amount or o["order_detail"]["price_info"]["order_price"]},
        }
        sb.store.put(AFTERSALE, aid, a)
        o["aftersale_detail"]["aftersale_order_list"].append({"aftersale_order_id": aid, "status": a["status"]})
        o["aftersale_detail"]["on_aftersale_order_cnt"] += 1
        touch(o)
        await push(sb, "channels_ec_aftersale_update", {"finder_shop_aftersale_status_update": {
            "status": a["status"], "after_sale_order_id": aid, "order_id": o["order_id"]}})
        return a

    @control.post("/channels/aftersales/{after_sale_order_id}/returned")
    async def aftersale_returned(after_sale_order_id: str):
        """The buyer sent the goods of an accepted return back: the merchant confirms receipt next."""
        a = aftersale(after_sale_order_id)
        if a["status"] != "USER_WAIT_RETURN":
            raise _fail(AFTERSALE_STATUS_WRONG)
        a["status"] = "MERCHANT_WAIT_RECEIPT"
        await aftersale_changed(a)
        return a

    @control.post("/channels/aftersales/{after_sale_order_id}/withdraw")
    async def aftersale_withdraw(after_sale_order_id: str):
        """The buyer withdraws an after-sale the merchant has not decided."""
        a = aftersale(after_sale_order_id)
        if a["status"] != "MERCHANT_PROCESSING":
            raise _fail(AFTERSALE_STATUS_WRONG)
        a["status"] = "USER_CANCELD"
        await aftersale_changed(a)
        return a

    @control.post("/channels/push/release")
    async def release_pushes():
        """Send the held pushes, newest first (the shop does not promise any order)."""
        return {"sent": await release(sb)}

    @control.post("/messages/subscriptions")
    async def subscribe(req: SubscriptionBody):
        key = f"{req.openid}:{req.template_id}"
        sub = sb.store.get(SUBSCRIPTION, key) or {"count": 0}
        sub["count"] += req.count
        sb.store.put(SUBSCRIPTION, key, sub)
        return {"openid": req.openid, "template_id": req.template_id, "count": sub["count"]}

    @control.get("/messages")
    async def sent_messages(touser: str | None = None):
        return sorted((m for m in sb.store.all(MESSAGE) if touser in (None, m["touser"])), key=lambda m: int(m["msgid"]))

    app.include_router(router)
    app.include_router(control)


HELD = "channels.push.held"


async def push(sb: Sandbox, event: str, fields: dict[str, Any]) -> int | None:
    """Push a shop event in security mode to the configured URL; its HTTP status, None if no URL
    (or when the push is lost or held, as the push settings say)."""
    cfg = sb.store.get(PUSH, "config")
    if not cfg or not cfg.get("url"):
        return None
    if cfg.get("lose", 0) > 0:
        sb.store.put(PUSH, "config", {**cfg, "lose": cfg["lose"] - 1})
        return None
    message = {"CreateTime": int(time.time()), "MsgType": "event", "Event": event, **fields}
    if cfg.get("hold"):
        held = sb.store.get(HELD, "queue") or {"messages": []}
        sb.store.put(HELD, "queue", {"messages": [*held["messages"], message]})
        return None
    status = await _send(sb, cfg["url"], message)
    if cfg.get("duplicate"):
        status = await _send(sb, cfg["url"], message)
    return status


async def check_url(sb: Sandbox, url: str) -> bool:
    timestamp, nonce, echostr = str(int(time.time())), str(secrets.randbelow(10**10)), secrets.token_hex(8)
    params = {"signature": push_crypto.signature(sb.credentials.channels_push_token, timestamp, nonce),
              "timestamp": timestamp, "nonce": nonce, "echostr": echostr}
    try:
        response = await sb.callback_client().get(url, params=params)
    except Exception:  # noqa: BLE001 - unreachable: the check fails
        return False
    return response.status_code == 200 and response.text == echostr


async def release(sb: Sandbox) -> int:
    cfg = sb.store.get(PUSH, "config") or {}
    held = (sb.store.get(HELD, "queue") or {"messages": []})["messages"]
    sb.store.put(HELD, "queue", {"messages": []})
    for message in reversed(held):
        await _send(sb, cfg.get("url") or "", message)
    return len(held)


async def _send(sb: Sandbox, url: str, fields: dict[str, Any]) -> int | None:
    if not url:
        return None
    creds = sb.credentials
    message = json.dumps({"ToUserName": "gh_" + creds.channels_appid[2:14], "FromUserName": "OpenPlatform", **fields},
                         ensure_ascii=False, separators=(",", ":"))
    encrypted = push_crypto.seal(creds.channels_encoding_aes_key, creds.channels_appid, message)
    timestamp, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
    params = {
        "signature": push_crypto.signature(creds.channels_push_token, timestamp, nonce),
        "timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes",
        "msg_signature": push_crypto.signature(creds.channels_push_token, timestamp, nonce, encrypted),
    }
    body = json.dumps({"ToUserName": "gh_" + creds.channels_appid[2:14], "Encrypt": encrypted})
    response = await sb.post(url, params=params, content=body.encode(),
                             headers={"Content-Type": "application/json"})
    return response.status_code if response is not None else 0
