"""The sandbox's merchant kit: with no partner keys configured, our clients use the ids and keys
the local sandbox hands out (`merchant.json` in SANDBOX_DIR), as a real partner hands them to a
merchant. Only that file is shared with the sandbox, never its code.

`make dev` writes the kit before it starts anything; a process started alongside the sandbox
(docker compose) waits a little for it."""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel

KIT_FILE = "merchant.json"


class SandboxKit(BaseModel):
    mchid: str
    appid: str
    app_secret: str
    apiv3_key: str
    merchant_private_key_pem: str
    merchant_cert_serial_no: str
    platform_public_key_pem: str
    platform_public_key_id: str
    logistics_key: str
    logistics_customer: str
    channels_appid: str
    channels_secret: str
    channels_push_token: str
    channels_encoding_aes_key: str
    # kits written before the mini program existed lack these; the sandbox rewrites its kit at start
    miniprogram_appid: str = ""
    miniprogram_secret: str = ""


class SandboxKitMissing(RuntimeError):
    pass


def load_kit(directory: Path, wait_seconds: float = 30.0) -> SandboxKit:
    path = Path(directory) / KIT_FILE
    deadline = time.monotonic() + wait_seconds
    while not path.exists():
        if time.monotonic() >= deadline:
            raise SandboxKitMissing(
                f"no partner keys are configured and the sandbox's {path} does not exist: start the "
                "sandbox first (`chuchuang sandbox`, or `make dev`) or set the partner settings "
                "(WECHATPAY_*, WECHAT_*, LOGISTICS_*, CHANNELS_*)")
        time.sleep(0.2)
    return _parse(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _parse(path: Path, _mtime_ns: int) -> SandboxKit:
    return SandboxKit.model_validate(json.loads(path.read_text()))
