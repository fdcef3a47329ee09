"""Dependencies flow one way: cli → worker | api → workflows → activities → integrations | db →
settings → domain, and the sandbox is an emulator apart (it imports none of our code, and none of
our code imports it except the dev stack that starts it).

Every import is read from the source (module level and inside functions alike). import-linter
would be the tool for this, but it takes only packages as roots and two of ours are modules
(worker.py and settings.py, as the design card lays them out)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the higher a layer, the more it may import; `|` in the docstring: one layer, siblings independent
LAYERS = [("cli",), ("worker", "api"), ("workflows",), ("activities",), ("integrations", "db"), ("settings",),
          ("domain",)]
SANDBOX = "sandbox"
MAY_START_THE_SANDBOX = {"cli"}
TOP = {name for layer in LAYERS for name in layer} | {SANDBOX}


def imports_of(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def violations(sources: dict[str, str]) -> list[str]:
    """`sources`: path relative to the repository → its text. Each import against the flow."""
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    found = []
    for path, text in sorted(sources.items()):
        here = Path(path).parts[0].removesuffix(".py")
        for line, module in imports_of(text):
            there = module.split(".")[0]
            if there not in TOP or there == here:
                continue
            if SANDBOX in (here, there):
                wrong = not (there == SANDBOX and here in MAY_START_THE_SANDBOX)
            else:
                wrong = rank[there] <= rank[here]
            if wrong:
                found.append(f"{path}:{line}: {here} imports {module}")
    return found


def our_sources() -> dict[str, str]:
    sources = {}
    for name in TOP:
        module = ROOT / f"{name}.py"
        files = [module] if module.exists() else sorted((ROOT / name).rglob("*.py"))
        for f in files:
            sources[str(f.relative_to(ROOT))] = f.read_text()
    return sources


def test_every_import_flows_one_way():
    sources = our_sources()
    assert {"worker.py", "settings.py", "workflows/order.py", "sandbox/app.py"} <= set(sources)
    assert violations(sources) == []


def test_the_check_catches_imports_against_the_flow():
    bad = {
        "activities/channels_outbox.py": "from workflows.channels_sync import ChannelsSyncWorkflow\n",
        "settings.py": "def order_timings():\n    from workflows.order import OrderTimings\n",
        "integrations/wechatpay.py": "from sandbox.credentials import load_or_create\n",
        "sandbox/channels.py": "from integrations import wxcrypt\n",
        "integrations/channels.py": "import db.models\n",
        "api/routers/x.py": "from worker import build_worker\n",
    }
    fine = {
        "api/routers/orders.py": "from workflows.order import OrderWorkflow\nfrom domain.orders import X\n",
        "workflows/order.py": "from activities.orders import OrderActivities\n",
        "cli/devstack.py": "from sandbox.credentials import load_or_create\nimport worker\n",
        "domain/orders.py": "from temporalio import workflow\nimport re\n",
    }
    assert len(violations({**bad, **fine})) == len(bad)
    assert violations(fine) == []
