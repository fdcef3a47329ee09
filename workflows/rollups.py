"""DashboardRollupWorkflow: keeps the dashboards' daily facts current.

    dashboard-rollups (Schedule, every DASHBOARD_ROLLUP_EVERY, overlap skip)
        refresh_rollups once: snapshot today's window counters, recompute the day, week and
        month of today and of the last DASHBOARD_ROLLUP_LOOKBACK_DAYS days
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.rollups import RollupActivities, RollupInput, RollupResult

ROLLUP_WORKFLOW_ID = "dashboard-rollups-run"


@workflow.defn(name="DashboardRollupWorkflow")
class DashboardRollupWorkflow:
    @workflow.run
    async def run(self, inp: RollupInput) -> RollupResult:
        # the Schedule gives no time: the periods are those of the workflow's own clock
        when = inp if inp.as_of is not None else inp.model_copy(update={"as_of": workflow.now()})
        return await workflow.execute_activity_method(
            RollupActivities.refresh_rollups, when,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=30)))
