"""The search attributes operators filter workflows by in Temporal UI, defined once.

Workflows set them, the API and the Schedules start workflows with them, and
`integrations/temporal.py` registers them on the namespace (docker-compose.yml's
`temporal-setup` registers the same names and types)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

ORDER_NO = SearchAttributeKey.for_keyword("OrderNo")
PROMOTER_ID = SearchAttributeKey.for_keyword("PromoterId")
SUPPLIER_ID = SearchAttributeKey.for_keyword_list("SupplierId")
BUSINESS_STATUS = SearchAttributeKey.for_keyword("BusinessStatus")
# set by Temporal itself on a workflow a Schedule started
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")

OURS = (ORDER_NO, PROMOTER_ID, SUPPLIER_ID, BUSINESS_STATUS)
