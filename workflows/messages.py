"""MessageDrainWorkflow: sends what the notification outbox holds as subscribe messages.

    messages-drain (Schedule, every MESSAGES_DRAIN_EVERY, overlap skip)
        deliver_messages once (itself a bounded drain of a few batches; what is left, and rows a
        crashed drain left `sending`, wait for the next run)

Notifications of every process (supplier and product review, promoter cycles, refunds,
withdrawals, ...) go out this way; OrderWorkflow also drains after each change so a buyer hears
of it at once. A partner outage fails the run (the rows are back to `pending`): the next one
sends them.
"""

from __future__ import annotations

from temporalio import workflow

from workflows.options import MESSAGE_SEND

with workflow.unsafe.imports_passed_through():
    from activities.messages import MessageActivities

DRAIN_WORKFLOW_ID = "messages-drain-run"


@workflow.defn(name="MessageDrainWorkflow")
class MessageDrainWorkflow:
    @workflow.run
    async def run(self) -> int:
        """How many messages were sent."""
        return await workflow.execute_activity_method(MessageActivities.deliver_messages, **MESSAGE_SEND)
