"""The mini program's server APIs on their wire format: login by code and the buyer's phone number.

* `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code` → `openid`,
  `session_key`, and `unionid` when the person has one (the app is bound to an open-platform
  account); errors as HTTP 200 with `errcode`/`errmsg`: 40013 invalid appid, 40125 invalid
  appsecret, 40002 invalid grant_type, 40029 invalid code (unknown or older than five minutes),
  40163 code been used.
* `POST /wxa/business/getuserphonenumber?access_token=ACCESS_TOKEN` with `{"code": "..."}` (the
  code of the `getPhoneNumber` button; single use, five minutes) → `{"errcode": 0, "errmsg": "ok",
  "phone_info": {"phoneNumber", "purePhoneNumber", "countryCode", "watermark": {"timestamp",
  "appid"}}}`; a bad code is 40029, a missing token 41001, a bad one 40001, an expired one 42001.
  Access tokens are the mini program's, from `/cgi-bin/token` or `/cgi-bin/stable_token`.

Controls (the buyer's phone playing its part): `POST /sandbox/miniprogram/login` (`wx.login()`:
a code for a person, given by unionid and/or openid) and `POST /sandbox/miniprogram/phone-code`
(the user taps "allow" on the phone-number button).

Docs: developers.weixin.qq.com/miniprogram/dev/OpenApiDoc/user-login/code2Session.html,
.../OpenApiDoc/user-info/phone-number/getPhoneNumber.html.
"""

from __future__ import annotations

import secrets
import time

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, ValidationError

from sandbox.context import Sandbox
from sandbox.oauth import CODE_TTL_SECONDS, new_openid, openid_in_app

LOGIN_CODE = "miniprogram.login_code"
PHONE_CODE = "miniprogram.phone_code"
TOKEN = "wechat.access_token"  # issued by the token endpoints in sandbox/channels.py


class LoginRequest(BaseModel):
    openid: str | None = None
    unionid: str | None = None


class PhoneCodeRequest(BaseModel):
    phone_number: str = Field(pattern=r"^\d{5,15}$", description="without the country code")
    country_code: str = Field(default="86", pattern=r"^\d{1,4}$")


class PhoneRequest(BaseModel):
    code: str = ""


def _rid() -> str:
    return "-".join(secrets.token_hex(4) for _ in range(3))


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    router = APIRouter(tags=["mini program"])
    control = APIRouter(prefix="/sandbox/miniprogram", tags=["sandbox controls"])

    def single_use(kind: str, code: str) -> dict | None:
        """The code's record if it is valid now (and mark it used), else the errcode answer."""
        issued = sb.store.get(kind, code) if code else None
        if issued is None or time.time() - issued["issued_at"] > CODE_TTL_SECONDS:
            return {"errcode": 40029, "errmsg": f"invalid code, rid: {_rid()}"}
        if issued.get("used"):
            return {"errcode": 40163, "errmsg": f"code been used, rid: {_rid()}"}
        sb.store.put(kind, code, issued | {"used": True})
        return None

    @router.get("/sns/jscode2session")
    async def jscode2session(appid: str = "", secret: str = "", js_code: str = "", grant_type: str = ""):
        if appid != creds.miniprogram_appid:
            return {"errcode": 40013, "errmsg": f"invalid appid, rid: {_rid()}"}
        if not secrets.compare_digest(secret, creds.miniprogram_secret):
            return {"errcode": 40125, "errmsg": f"invalid appsecret, rid: {_rid()}"}
        if grant_type != "authorization_code":
            return {"errcode": 40002, "errmsg": f"invalid grant_type, rid: {_rid()}"}
        refused = single_use(LOGIN_CODE, js_code)
        if refused:
            return refused
        issued = sb.store.get(LOGIN_CODE, js_code)
        answer = {"openid": issued["openid"], "session_key": secrets.token_urlsafe(18)}
        if issued.get("unionid"):
            answer["unionid"] = issued["unionid"]
        return answer

    @router.post("/wxa/business/getuserphonenumber")
    async def getuserphonenumber(request: Request, access_token: str = ""):
        if not access_token:
            return {"errcode": 41001, "errmsg": "access_token missing"}
        token = sb.store.get(TOKEN, access_token)
        if token is None or token.get("appid") != creds.miniprogram_appid:
            return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
        if token["expires_at"] <= time.time():
            return {"errcode": 42001, "errmsg": "access_token expired"}
        try:
            req = PhoneRequest.model_validate_json(await request.body() or b"{}")
        except ValidationError:
            return {"errcode": 47001, "errmsg": "data format error"}
        refused = single_use(PHONE_CODE, req.code)
        if refused:
            return refused
        issued = sb.store.get(PHONE_CODE, req.code)
        number, country = issued["phone_number"], issued["country_code"]
        return {"errcode": 0, "errmsg": "ok", "phone_info": {
            "phoneNumber": number if country == "86" else f"+{country}{number}", "purePhoneNumber": number,
            "countryCode": country, "watermark": {"timestamp": int(time.time()), "appid": creds.miniprogram_appid}}}

    @control.post("/login")
    async def wx_login(req: LoginRequest | None = None):
        unionid = req.unionid if req else None
        openid = (req.openid if req else None) or (
            openid_in_app(creds.miniprogram_appid, unionid) if unionid else new_openid())
        code = secrets.token_hex(16)
        sb.store.put(LOGIN_CODE, code, {"openid": openid, "unionid": unionid, "issued_at": time.time()})
        return {"code": code, "openid": openid, "unionid": unionid}

    @control.post("/phone-code")
    async def phone_code(req: PhoneCodeRequest):
        code = secrets.token_hex(16)
        sb.store.put(PHONE_CODE, code, {**req.model_dump(), "issued_at": time.time()})
        return {"code": code}

    app.include_router(router)
    app.include_router(control)
