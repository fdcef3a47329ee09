"""APP_ENV=production refuses to start (API, worker, sandbox) with any unsafe default, and says
which setting to fix; development starts with all of them."""

from __future__ import annotations

import functools
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from integrations.production import PARTNER_SETTINGS, UnsafeConfiguration, refuse_unsafe_defaults, unsafe_defaults
from integrations.sandbox_kit import KIT_FILE
from settings import Settings

SECRET = "x" * 20 + "-production-secret-0123456789"


@functools.cache
def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_pair(tmp_path):
    key = _key()
    private = tmp_path / "apiclient_key.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "pub_key.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture
def safe(tmp_path, database_url) -> Settings:
    private, public = _pem_pair(tmp_path)
    return Settings(
        _env_file=None, app_env="production", data_dir=tmp_path, database_url=database_url,
        master_key=SECRET, metrics_token="metrics-" + SECRET,
        wechatpay_mchid="1900000109", wechatpay_appid="wx8888888888888888", wechatpay_apiv3_key="a" * 32,
        wechatpay_private_key_path=private, wechatpay_cert_serial_no="5157F09EFDC096DE15EBE81A47057A72",
        wechatpay_public_key_path=public, wechatpay_public_key_id="PUB_KEY_ID_0114232134912410000000000000",
        wechat_app_secret="b" * 32, wechat_mini_appid="wx7777777777777777", wechat_mini_secret="g" * 32,
        logistics_key="c" * 16, logistics_customer="D" * 32,
        channels_appid="wx9999999999999999", channels_secret="e" * 32, channels_push_token="token123",
        channels_encoding_aes_key="f" * 43,
    )


def test_production_with_everything_set_starts(safe, sessions):
    from api.app import create_app

    assert unsafe_defaults(safe) == []
    app = create_app(safe, sessions=sessions)
    assert app.state.pay.config.mchid == "1900000109"


UNSAFE = [
    ({"master_key": None}, "MASTER_KEY is missing and JWT_SECRET, PICKUP_CODE_KEY, RISK_HASH_KEY, "
                           "IDENTITY_HASH_KEY, PAYLOAD_KEYS not set on their own"),
    ({"master_key": "short"}, "MASTER_KEY is too short"),
    ({"jwt_secret": "tiny"}, "JWT_SECRET is too short"),
    ({"metrics_token": None}, "METRICS_TOKEN is missing: the API's /metrics would be open to anyone"),
    ({"payload_keys": {"k1": "c2hvcnQ="}}, "payload_keys k1: an AES-256 key is 32 bytes"),
    ({"logistics_base_url": "http://127.0.0.1:8800"}, "LOGISTICS_BASE_URL points at the sandbox"),
    ({"channels_base_url": "http://sandbox:8800"}, "CHANNELS_BASE_URL points at the sandbox"),
    *[({name: None}, f"{name.upper()} is empty: {partner} would fall back to the sandbox's merchant kit")
      for name, partner in PARTNER_SETTINGS.items()],
]


@pytest.mark.parametrize("change, message", UNSAFE, ids=[next(iter(c)) + ("" if v else "=empty")
                                                         for c, _ in UNSAFE for v in [next(iter(c.values()))]])
def test_production_refuses_each_unsafe_default(safe, sessions, change, message):
    from api.app import create_app

    unsafe = safe.model_copy(update=change)
    assert any(message in problem for problem in unsafe_defaults(unsafe)), unsafe_defaults(unsafe)
    with pytest.raises(UnsafeConfiguration) as refused:
        create_app(unsafe, sessions=sessions)
    assert str(refused.value).startswith("APP_ENV=production refuses to start:") and message in str(refused.value)
    # development starts with the same settings
    refuse_unsafe_defaults(unsafe.model_copy(update={"app_env": "development"}))


def test_production_refuses_the_sandboxs_own_credentials(safe):
    (safe.sandbox_dir).mkdir(parents=True)
    (safe.sandbox_dir / KIT_FILE).write_text(json.dumps({"mchid": "1900000109", "app_secret": "b" * 32}))
    problems = unsafe_defaults(safe)
    assert any(p.startswith("WECHATPAY_MCHID is the sandbox's credential") for p in problems)
    assert any(p.startswith("WECHAT_APP_SECRET is the sandbox's credential") for p in problems)


def test_every_problem_is_listed_at_once(tmp_path):
    bare = Settings(_env_file=None, app_env="production", data_dir=tmp_path)
    problems = unsafe_defaults(bare)
    assert len(problems) == 2 + len(PARTNER_SETTINGS)  # secrets, metrics, every partner setting
    assert not (tmp_path / "master_key").exists()  # nothing generated on the way


async def test_the_worker_refuses_before_connecting(safe):
    from worker import run_worker

    with pytest.raises(UnsafeConfiguration, match="WECHATPAY_APIV3_KEY is empty"):
        # TEMPORAL_ADDRESS points nowhere: a refusal must come before any connection attempt
        await run_worker(safe.model_copy(update={"wechatpay_apiv3_key": None, "temporal_address": "127.0.0.1:1"}))


def test_the_sandbox_never_runs_in_production(safe, monkeypatch):
    import cli.main

    monkeypatch.setattr(cli.main, "get_settings", lambda: safe)
    result = CliRunner().invoke(cli.main.app, ["sandbox"])
    assert result.exit_code != 0 and "never runs in production" in str(result.exception or result.output)


async def test_metrics_need_the_token_when_one_is_set(settings, sessions, sandbox_app):
    import httpx

    from api.app import create_app

    app = create_app(settings.model_copy(update={"metrics_token": "m" * 40}), sessions=sessions)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test") as client:
        assert (await client.get("/metrics")).status_code == 401
        assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        ok = await client.get("/metrics", headers={"Authorization": "Bearer " + "m" * 40})
        assert ok.status_code == 200 and "python_info" in ok.text
