"""MessageDrainWorkflow: sends what the notification outbox holds as subscribe messages.

    messages-drain (Schedule, every MESSAGES_DRAIN_EVERY, overlap buffer one)
        send_as_written for MESSAGES_DRAIN_EVERY: the outbox's listener, sending each change
        as it is committed (the next run starts as this one ends, so one is always listening)

Notifications of every process (orders, supplier and product review, promoter cycles,
refunds, withdrawals, ...) go out this way, within moments of their commit. A listener that
dies (worker gone) times out on its heartbeat; its rows wait, `pending`, for the next run.
A run without `listen_for_seconds` (started by hand, or before the listener) drains once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.options import MESSAGE_SEND, listening

with workflow.unsafe.imports_passed_through():
    from activities.messages import MessageActivities

DRAIN_WORKFLOW_ID = "messages-drain-run"


@workflow.defn(name="MessageDrainWorkflow")
class MessageDrainWorkflow:
    @workflow.run
    async def run(self, listen_for_seconds: int = 0) -> int:
        """How many messages were sent."""
        if listen_for_seconds > 0:
            return await workflow.execute_activity_method(
                MessageActivities.send_as_written, listen_for_seconds,
                **listening(timedelta(seconds=listen_for_seconds)))
        return await workflow.execute_activity_method(MessageActivities.deliver_messages, **MESSAGE_SEND)
