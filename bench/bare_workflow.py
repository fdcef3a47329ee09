"""The yardstick: a workflow that only runs N no-op activities in sequence."""

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn
def noop(step: int) -> int:
    return step


@workflow.defn
class BareWorkflow:
    @workflow.run
    async def run(self, steps: int) -> int:
        for step in range(steps):
            await workflow.execute_activity(noop, step, start_to_close_timeout=timedelta(seconds=30))
        return steps
