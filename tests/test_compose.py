"""docker-compose.yml and Dockerfile, checked without a Docker engine: the services exist and
are wired sanely, and every variable given to our own services is a real Settings field."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from cli import devstack
from settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

REQUIRED = {"postgresql", "temporal", "temporal-ui", "migrate", "sandbox", "worker", "api"}
OUR_LONG_RUNNING = {"sandbox", "worker", "api"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def ours(services: dict[str, dict]) -> dict[str, dict]:
    """Services built from the repo's Dockerfile."""
    built = {name: svc for name, svc in services.items() if "build" in svc}
    assert built, "no service builds the repo's Dockerfile"
    return built


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def command_text(service: dict) -> str:
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts += [value] if isinstance(value, str) else [str(v) for v in value]
    return " ".join(parts)


def host_ports(service: dict) -> list[str]:
    return [str(p).rsplit(":", 1)[0] for p in service.get("ports") or [] if ":" in str(p)]


# --- services and wiring --------------------------------------------------------------------


def test_required_services_exist(services: dict, ours: dict) -> None:
    assert REQUIRED <= set(services)
    assert {"migrate", "sandbox", "worker", "api"} <= set(ours)


def test_our_services_are_configured_only_through_settings_fields(ours: dict) -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name, service in ours.items():
        unknown = set(env_of(service)) - fields
        assert not unknown, f"{name}: {sorted(unknown)} are not settings.Settings fields"
        assert "env_file" not in service, f"{name}: keep configuration visible in environment:"


def test_our_services_use_the_chuchuang_cli(ours: dict) -> None:
    expected = {"migrate": "chuchuang db upgrade", "sandbox": "chuchuang sandbox",
                "worker": "chuchuang worker", "api": "chuchuang api"}  # fmt: skip
    for name, command in expected.items():
        assert command_text(ours[name]) == command


def test_database_and_temporal_point_at_the_compose_services(services: dict, ours: dict) -> None:
    for name, service in ours.items():
        env = env_of(service)
        db = urlsplit(env["DATABASE_URL"])
        assert db.scheme == "postgresql+psycopg", name
        assert db.hostname == "postgresql" and db.path == "/chuchuang", name
        host, port = env["TEMPORAL_ADDRESS"].split(":")
        assert host in services and host == "temporal" and port == "7233", name
        assert urlsplit(env["SANDBOX_URL"]).hostname == "sandbox", name
        assert Settings(**{k.lower(): v for k, v in env.items() if "$" not in v})  # values parse


def test_data_dir_is_one_volume_shared_by_our_services(compose: dict, ours: dict) -> None:
    mounts = set()
    for name, service in ours.items():
        data_dir = env_of(service)["DATA_DIR"]
        volume = [v for v in service.get("volumes", []) if str(v).endswith(f":{data_dir}")]
        assert len(volume) == 1, f"{name}: DATA_DIR {data_dir} is not on a volume"
        mounts.add(volume[0].split(":")[0])
    assert len(mounts) == 1 and mounts <= set(compose.get("volumes") or {})


def test_servers_bind_all_interfaces_in_containers(ours: dict) -> None:
    env = env_of(ours["api"])
    assert env["API_HOST"] == "0.0.0.0" and env["API_PORT"] == "8000"
    assert env_of(ours["sandbox"])["SANDBOX_HOST"] == "0.0.0.0"


def test_ports(services: dict) -> None:
    assert "8000:8000" in services["api"]["ports"]
    assert "8233:8080" in services["temporal-ui"]["ports"]
    published = [port for service in services.values() for port in host_ports(service)]
    assert len(published) == len(set(published)), f"host port published twice: {published}"


def compose_default(value: str) -> str:
    """`${NAME:-default}` -> default (what the value is when NAME is not set)."""
    found = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return found.group(1) if found else value


def test_only_the_api_and_an_authenticated_temporal_ui_are_published(services: dict) -> None:
    published = {name: host_ports(service) for name, service in services.items() if host_ports(service)}
    assert published == {"api": ["8000"], "temporal-ui": ["8233"]}, published
    assert not services["temporal"].get("ports"), "Temporal gRPC must not be published"
    assert not services["sandbox"].get("ports"), "the sandbox pays any order: never published"
    assert not services["worker"].get("ports"), "workers' /metrics stay inside the network"


def test_the_sandbox_runs_only_in_the_dev_profile(services: dict) -> None:
    assert services["sandbox"].get("profiles") == ["dev"]
    for name, service in services.items():
        if name != "sandbox" and "sandbox" in (service.get("depends_on") or {}):
            assert service["depends_on"]["sandbox"].get("required") is False, f"{name} needs the dev profile"
        assert "profiles" not in service or name == "sandbox", f"{name} is hidden behind a profile"


def test_temporal_ui_needs_an_oidc_login_and_decodes_through_the_codec_endpoint(services: dict) -> None:
    env = env_of(services["temporal-ui"])
    assert env["TEMPORAL_AUTH_ENABLED"] == "true"
    for name in ("TEMPORAL_AUTH_PROVIDER_URL", "TEMPORAL_AUTH_CLIENT_ID", "TEMPORAL_AUTH_CLIENT_SECRET",
                 "TEMPORAL_AUTH_CALLBACK_URL"):
        assert env[name].startswith("${"), f"{name} must come from the environment, not the file"
    codec = urlsplit(compose_default(env["TEMPORAL_CODEC_ENDPOINT"]))
    assert codec.path == "/codec" and str(codec.port) in host_ports(services["api"])
    assert env["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"  # the /codec/session cookie
    # the API lets exactly that browser origin call /codec
    api_env = env_of(services["api"])
    origins = json.loads(compose_default(api_env["CODEC_CORS_ORIGINS"]))
    ui_port = host_ports(services["temporal-ui"])[0]
    assert origins == [f"http://localhost:{ui_port}"]
    assert Settings(codec_cors_origins=origins).resolved_codec_cors_origins == origins


def test_production_settings_come_from_the_environment(ours: dict) -> None:
    for name in ("api", "worker"):
        env = env_of(ours[name])
        for setting in ("APP_ENV", "MASTER_KEY", "METRICS_TOKEN"):
            assert env[setting].startswith("${" + setting), f"{name}: {setting} is not settable"
        assert compose_default(env["APP_ENV"]) == "development"
        assert "JWT_SECRET" not in env or env["JWT_SECRET"].startswith("${")


def test_worker_scales_out(services: dict) -> None:
    worker = services["worker"]
    assert "container_name" not in worker and not worker.get("ports")
    assert worker.get("deploy", {}).get("replicas", 1) >= 1


def test_depends_on_is_sane(services: dict) -> None:
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services and dep != name, f"{name} depends on unknown {dep}"
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} health it never reports"
    graph = {name: set(depends_on(service)) for name, service in services.items()}
    seen: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' -> '.join((*path, node))}"
        if node not in seen:
            for dep in graph[node]:
                visit(dep, (*path, node))
            seen.add(node)

    for node in graph:
        visit(node, ())

    assert "healthcheck" in services["postgresql"]
    assert str(services["postgresql"]["image"]).startswith("postgres:16")
    for name in ("worker", "api"):
        deps = depends_on(services[name])
        assert deps["migrate"] == "service_completed_successfully"
    assert depends_on(services["migrate"])["postgresql"] == "service_healthy"


def transitive_deps(services: dict, name: str) -> set[str]:
    found: set[str] = set()
    stack = [name]
    while stack:
        for dep in depends_on(services[stack.pop()]):
            if dep not in found:
                found.add(dep)
                stack.append(dep)
    return found


def test_search_attributes_are_registered_before_workers_start(services: dict) -> None:
    expected = devstack.search_attribute_flags()[1::2]  # ["OrderNo=Keyword", ...]
    registrars = [
        name for name, service in services.items() if "search-attribute create" in command_text(service)
    ]
    assert len(registrars) == 1
    registrar = services[registrars[0]]
    assert "temporalio/admin-tools" in registrar["image"]
    words = set(re.findall(r"\w+=\w+", command_text(registrar)))
    assert set(expected) <= words, "compose and chuchuang/temporal.py disagree on search attributes"
    for name in ("worker", "api"):
        assert registrars[0] in transitive_deps(services, name)
    assert "temporal" in depends_on(registrar)


def test_temporal_runs_on_the_postgresql_service(services: dict) -> None:
    env = env_of(services["temporal"])
    assert env["POSTGRES_SEEDS"] == "postgresql" and env["DB"].startswith("postgres")
    assert "postgresql" in transitive_deps(services, "temporal")
    assert env_of(services["temporal-ui"])["TEMPORAL_ADDRESS"] == "temporal:7233"


# --- Dockerfile -----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_runs_the_cli_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    cmd = [arg for op, arg in instructions if op in {"CMD", "ENTRYPOINT"}]
    assert cmd, "no CMD/ENTRYPOINT"
    argv = yaml.safe_load(cmd[-1]) if cmd[-1].startswith("[") else shlex.split(cmd[-1])
    assert argv == ["chuchuang", "api"]


# --- docker compose itself (parses only; no engine needed) -----------------------------------


def compose_cli() -> list[str] | None:
    """`docker compose` (the CLI plugin) or a standalone v2 `docker-compose`, if either works."""
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        version = subprocess.run([*argv, "version", "--short"], capture_output=True, text=True)
        if version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2"):
            return argv
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor a v2 `docker-compose` is installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
