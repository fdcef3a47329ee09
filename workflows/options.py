"""Activity options every workflow shares."""

from datetime import timedelta

from temporalio.common import RetryPolicy

# A short database transaction: retried until it goes through.
DB_STEP = dict(start_to_close_timeout=timedelta(seconds=30),
               retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30)))
# A call to a partner API: retried with backoff; business refusals are non-retryable errors.
PARTNER_CALL = dict(start_to_close_timeout=timedelta(seconds=20),
                    retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
# Sending the outbox's subscribe messages: a few tries, then the next drain sends them.
MESSAGE_SEND = dict(start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=10)))


def listening(period: timedelta) -> dict:
    """A long-running listener: alive while it heartbeats, retried briefly when it dies."""
    return dict(start_to_close_timeout=period + timedelta(minutes=1), heartbeat_timeout=timedelta(minutes=1),
                retry_policy=MESSAGE_SEND["retry_policy"])


def paid_step(give_up_after: timedelta) -> dict:
    """A database step of an order that holds the buyer's money: retried, but only for
    `give_up_after` (a setting); then the order compensates (the money goes back) instead of
    waiting for good on a record that cannot be written."""
    return dict(start_to_close_timeout=timedelta(seconds=30), schedule_to_close_timeout=give_up_after,
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)))
