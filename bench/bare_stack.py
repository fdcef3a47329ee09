"""The yardstick for bench/load_test.py, as real processes: `bare_stack.py api PORT` serves a bare
FastAPI endpoint that starts a BareWorkflow (as many no-op activities as an order runs until it
is paid, which is what the load test measures: place_order, create_payment, verify_payment,
record_payment),
`bare_stack.py worker` runs them. Both read TEMPORAL_ADDRESS and TASK_QUEUE from the environment."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bare_workflow import BareWorkflow, noop  # noqa: E402

ACTIVITIES_UNTIL_PAID = 4


def api(port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from temporalio.client import Client

    app = FastAPI()
    state: dict = {}

    @app.post("/bare", status_code=201)
    async def start() -> dict:
        if "client" not in state:
            state["client"] = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
        wf_id = f"bare-{uuid.uuid4().hex}"
        await state["client"].start_workflow(BareWorkflow.run, ACTIVITIES_UNTIL_PAID, id=wf_id,
                                             task_queue=os.environ["TASK_QUEUE"])
        return {"id": wf_id}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


async def worker() -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(os.environ["TEMPORAL_ADDRESS"])
    with ThreadPoolExecutor(max_workers=64) as executor:
        await Worker(client, task_queue=os.environ["TASK_QUEUE"], workflows=[BareWorkflow], activities=[noop],
                     activity_executor=executor, max_concurrent_activities=64).run()


if __name__ == "__main__":
    if sys.argv[1] == "api":
        api(int(sys.argv[2]))
    else:
        asyncio.run(worker())
