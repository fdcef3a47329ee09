"""Official-account web OAuth (snsapi_base): exchanging the code WeChat hands the page for an openid.

Like WeChat, errors come back as HTTP 200 with `errcode`/`errmsg` (plus a `rid` in the message);
codes are single-use and expire after five minutes: a code used again is 40163 "code been used",
an unknown or expired one 40029 "invalid code".

Docs: 网页授权 (https://developers.weixin.qq.com/doc/offiaccount/OA_Web_Apps/Wechat_webpage_authorization.html):
the answer is access_token, expires_in, refresh_token, openid, scope; 返回码说明
(https://developers.weixin.qq.com/doc/oplatform/Return_codes/Return_code_descriptions_new.html):
40029 无效的 oauth_code, 40163 oauth_code已使用. With snsapi_userinfo, and the account bound to an
open-platform account, the answer adds the user's `unionid` (the same in every app of that account).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import time

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel

from sandbox.context import Sandbox

CODE = "oauth.code"
CODE_TTL_SECONDS = 300
_OPENID_ALPHABET = string.ascii_letters + string.digits + "_-"


class CodeRequest(BaseModel):
    openid: str | None = None
    # the person's unionid across the open-platform account's apps: the answer carries it (as for
    # snsapi_userinfo), and without an openid the official account's openid is derived from it
    unionid: str | None = None


def _rid() -> str:
    return "-".join(secrets.token_hex(4) for _ in range(3))


def new_openid() -> str:
    return "o" + "".join(secrets.choice(_OPENID_ALPHABET) for _ in range(27))


def new_unionid() -> str:
    return "o" + "".join(secrets.choice(_OPENID_ALPHABET) for _ in range(27))


def openid_in_app(appid: str, unionid: str) -> str:
    """One person's openid in one app: stable, and different in every app (as WeChat's are)."""
    digest = hashlib.sha256(f"{appid}:{unionid}".encode()).digest()
    return "o" + "".join(_OPENID_ALPHABET[b % len(_OPENID_ALPHABET)] for b in digest[:27])


def install(app: FastAPI, sb: Sandbox) -> None:
    creds = sb.credentials
    router = APIRouter(tags=["official account oauth"])

    @router.get("/sns/oauth2/access_token")
    async def access_token(
        appid: str = "", secret: str = "", code: str = "", grant_type: str = ""
    ):
        if appid != creds.appid or not secrets.compare_digest(secret, creds.app_secret):
            return {"errcode": 40125, "errmsg": "invalid appsecret"}
        if grant_type != "authorization_code":
            return {"errcode": 40002, "errmsg": "invalid grant_type"}
        issued = sb.store.get(CODE, code) if code else None
        if issued is None or time.time() - issued["issued_at"] > CODE_TTL_SECONDS:
            return {"errcode": 40029, "errmsg": f"invalid code, rid: {_rid()}"}
        if issued.get("used"):
            return {"errcode": 40163, "errmsg": f"code been used, rid: {_rid()}"}
        sb.store.put(CODE, code, issued | {"used": True})
        answer = {
            "access_token": secrets.token_urlsafe(64),
            "expires_in": 7200,
            "refresh_token": secrets.token_urlsafe(64),
            "openid": issued["openid"],
            "scope": "snsapi_userinfo" if issued.get("unionid") else "snsapi_base",
        }
        if issued.get("unionid"):
            answer["unionid"] = issued["unionid"]
        return answer

    @router.post("/sandbox/oauth/code", tags=["sandbox controls"])
    async def user_authorises(req: CodeRequest | None = None):
        unionid = req.unionid if req else None
        openid = (req.openid if req else None) or (openid_in_app(creds.appid, unionid) if unionid else new_openid())
        code = secrets.token_hex(16)
        sb.store.put(CODE, code, {"openid": openid, "unionid": unionid, "issued_at": time.time()})
        return {"code": code, "openid": openid, "unionid": unionid}

    app.include_router(router)
