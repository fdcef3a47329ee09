"""APP_ENV=production refuses unsafe defaults: the worker and the API do not start (and say
why, every reason at once) with a secret missing or generated, a partner setting empty (our
clients would fall back to the local sandbox's merchant kit), the sandbox's own credentials
copied into the settings, a partner pointed at the sandbox, or /metrics open to anyone."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from integrations.sandbox_kit import KIT_FILE
from settings import Settings

MIN_SECRET_CHARS = 32

# setting -> the partner it belongs to; empty, our clients use the sandbox's merchant kit
PARTNER_SETTINGS = {
    "wechatpay_mchid": "WeChat Pay", "wechatpay_appid": "WeChat Pay", "wechatpay_apiv3_key": "WeChat Pay",
    "wechatpay_private_key_path": "WeChat Pay", "wechatpay_cert_serial_no": "WeChat Pay",
    "wechatpay_public_key_path": "WeChat Pay", "wechatpay_public_key_id": "WeChat Pay",
    "wechat_app_secret": "WeChat OAuth", "wechat_mini_appid": "the mini program",
    "wechat_mini_secret": "the mini program", "logistics_key": "logistics", "logistics_customer": "logistics",
    "channels_appid": "WeChat Channels", "channels_secret": "WeChat Channels",
    "channels_push_token": "WeChat Channels", "channels_encoding_aes_key": "WeChat Channels",
}
# settings that may hold a copy of a sandbox kit value -> the kit's field
KIT_FIELDS = {
    "wechatpay_mchid": "mchid", "wechatpay_appid": "appid", "wechatpay_apiv3_key": "apiv3_key",
    "wechatpay_cert_serial_no": "merchant_cert_serial_no", "wechatpay_public_key_id": "platform_public_key_id",
    "wechat_app_secret": "app_secret", "wechat_mini_appid": "miniprogram_appid",
    "wechat_mini_secret": "miniprogram_secret", "logistics_key": "logistics_key", "logistics_customer": "logistics_customer",
    "channels_appid": "channels_appid", "channels_secret": "channels_secret",
    "channels_push_token": "channels_push_token", "channels_encoding_aes_key": "channels_encoding_aes_key",
}
PARTNER_URLS = ("wechatpay_base_url", "wechat_oauth_base_url", "logistics_base_url", "channels_base_url")
PURPOSE_KEYS = ("jwt_secret", "pickup_code_key", "risk_hash_key", "identity_hash_key")


class UnsafeConfiguration(SystemExit):
    """Raised at start-up; its message lists every problem (SystemExit: no traceback noise)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("APP_ENV=production refuses to start:\n" + "\n".join(f"  - {p}" for p in problems))


def _env(name: str) -> str:
    return name.upper()


def unsafe_defaults(settings: Settings) -> list[str]:
    """Everything production refuses, as messages naming the setting to fix; [] when safe."""
    problems: list[str] = []
    # --- secrets ---------------------------------------------------------------------------
    if not settings.master_key:
        unset = [_env(k) for k in PURPOSE_KEYS if not getattr(settings, k)]
        if not settings.payload_keys:
            unset.append("PAYLOAD_KEYS")
        if unset:
            problems.append(f"MASTER_KEY is missing and {', '.join(unset)} not set on their own: production never "
                            "generates secrets (they would differ per machine and sit in the data volume)")
    secrets = {"MASTER_KEY": settings.master_key, **{_env(k): getattr(settings, k) for k in PURPOSE_KEYS}}
    for name, value in secrets.items():
        if value and len(value) < MIN_SECRET_CHARS:
            problems.append(f"{name} is too short: use at least {MIN_SECRET_CHARS} random characters")
    try:
        settings.payload_key_set() if settings.payload_keys else None
    except ValueError as err:
        problems.append(str(err))
    if not settings.metrics_token:
        problems.append("METRICS_TOKEN is missing: the API's /metrics would be open to anyone")
    # --- partners: no empty setting, no sandbox ------------------------------------------------
    for name, partner in PARTNER_SETTINGS.items():
        if not getattr(settings, name):
            problems.append(f"{_env(name)} is empty: {partner} would fall back to the sandbox's merchant kit")
    sandbox = urlsplit(settings.resolved_sandbox_url)
    for name in PARTNER_URLS:
        url = getattr(settings, name)
        if url and (urlsplit(url).netloc == sandbox.netloc or "sandbox" in (urlsplit(url).hostname or "")):
            problems.append(f"{_env(name)} points at the sandbox ({url}): the sandbox is enabled")
    kit = settings.sandbox_dir / KIT_FILE
    if kit.exists():
        try:
            values = json.loads(kit.read_text())
        except ValueError:
            values = {}
        for name, field in KIT_FIELDS.items():
            value = getattr(settings, name)
            if value and value == values.get(field):
                problems.append(f"{_env(name)} is the sandbox's credential (from {kit}): use the partner's own")
    return problems


def refuse_unsafe_defaults(settings: Settings) -> None:
    if settings.app_env != "production":
        return
    problems = unsafe_defaults(settings)
    if problems:
        raise UnsafeConfiguration(problems)
