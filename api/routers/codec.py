"""The codec endpoint Temporal UI calls to show decoded payloads (Temporal's remote codec
server protocol): `POST /codec/decode` and `/codec/encode` take and return
`{"payloads": [{"metadata": {...base64}, "data": "base64"}]}`, the JSON form of
`temporal.api.common.v1.Payloads`. Only the platform's own staff (support, operator) may
decode: the bearer token comes in `Authorization` (the UI's "pass access token") or, for a
browser, in the HttpOnly cookie `POST /codec/session` sets (the UI's "include credentials").
CORS is open only to Temporal UI's origins (CODEC_CORS_ORIGINS) and only on /codec."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from google.protobuf import json_format
from google.protobuf.json_format import ParseError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payloads

from api.access import Access, declare
from api.auth import PLATFORM_STAFF, Principal, bearer, principal_of_token
from api.errors import ApiError

PREFIX = "/codec"
COOKIE = "chuchuang_codec"
MAX_BODY_BYTES = 8 * 1024 * 1024

router = APIRouter(prefix=PREFIX, tags=["ops"])


def _codec_principal(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """Staff only; the token comes as a bearer header or in the codec cookie (Temporal UI)."""
    token = credentials.credentials if credentials else request.cookies.get(COOKIE)
    if not token:
        raise ApiError(401, "UNAUTHORIZED", "the codec needs a support or operator token")
    principal = principal_of_token(request, token)
    if principal.role not in PLATFORM_STAFF:
        raise ApiError(403, "FORBIDDEN", "only support and operators may read workflow payloads")
    return principal


codec_principal = declare(_codec_principal, Access(frozenset(PLATFORM_STAFF)))


async def _payloads(request: Request) -> Payloads:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "TOO_LARGE", f"at most {MAX_BODY_BYTES} bytes of payloads at once")
    try:
        return json_format.Parse(body or b"{}", Payloads())
    except ParseError as err:
        raise ApiError(400, "BAD_PAYLOADS", "the body must be {\"payloads\": [...]} as Temporal UI sends it") from err


def _json(payloads: list) -> Response:
    return Response(json_format.MessageToJson(Payloads(payloads=payloads)), media_type="application/json")


@router.post("/decode", summary="Temporal UI's remote codec: decrypt payloads (support, operator)",
             response_description='{"payloads": [...]} decrypted')
async def decode(request: Request, _: Principal = Depends(codec_principal)) -> Response:
    payloads = await _payloads(request)
    try:
        decoded = await request.app.state.codec.decode(payloads.payloads)
    except ValueError as err:  # a key id we do not know, or a tampered payload
        raise ApiError(422, "PAYLOAD_KEY_UNKNOWN", str(err)) from err
    return _json(decoded)


@router.post("/encode", summary="Temporal UI's remote codec: encrypt payloads (support, operator)",
             response_description='{"payloads": [...]} encrypted with the key in force')
async def encode(request: Request, _: Principal = Depends(codec_principal)) -> Response:
    payloads = await _payloads(request)
    return _json(await request.app.state.codec.encode(payloads.payloads))


@router.post("/session", status_code=204,
             summary="Keep this staff token in an HttpOnly cookie for Temporal UI's codec calls "
                     "(the UI's \"include cross-origin credentials\")")
def codec_session(request: Request, response: Response, principal: Principal = Depends(codec_principal),
                  credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    if credentials is None:
        raise ApiError(401, "UNAUTHORIZED", "send the token as a bearer token to keep it")
    settings = request.app.state.settings
    response.set_cookie(COOKIE, credentials.credentials, max_age=int(settings.jwt_ttl.total_seconds()),
                        path=PREFIX, httponly=True, samesite="strict", secure=request.url.scheme == "https")


class CodecCORS:
    """Starlette's CORSMiddleware, for /codec only: the rest of the API answers no browser origin."""

    def __init__(self, app: ASGIApp, origins: list[str]):
        self.app = app
        self.cors = CORSMiddleware(app, allow_origins=origins, allow_methods=["POST"], allow_credentials=True,
                                   allow_headers=["content-type", "x-namespace", "authorization"], max_age=600)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX + "/"):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
