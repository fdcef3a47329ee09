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
