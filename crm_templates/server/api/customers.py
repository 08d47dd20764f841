"""A customer's CRM data (issue 13, item 1): ``GET /customers/{customer_id}/entries`` — what
the admin's CRM tab shows: every entity's entries whose reference is this customer
(``reference_type == "customer"``), newest first, at most ``limit`` (1–500, default 200;
``has_more`` says when there are more). 404 for an unknown customer. Another customer's
entries never appear: the store filters by the reference, and the answer is checked again.
"""

from __future__ import annotations

from typing import Any

from . import bp, crm
from .entries import entries_json
from .errors import ApiError
from .spec import operation


@operation(
    bp,
    "GET",
    "/customers/{customer_id}/entries",
    summary="A customer's entries across entities (the CRM tab)",
    tag="Customers",
    query={
        "limit": {"type": "integer", "minimum": 1, "maximum": 500, "default": 200},
        "include_customer": {"type": "boolean", "default": False},
    },
    response={"$ref": "#/components/schemas/CustomerEntries"},
    errors=(401, 403, 404, 422, 429),
)
def customer_entries(customer_id: str, query: dict[str, Any]) -> Any:
    """The customer and their entries, newest first."""
    service = crm()
    customer = service.get_customer(customer_id)
    if customer is None:
        raise ApiError(404, f"There is no customer {customer_id!r}.")
    limit = query.get("limit", 200)
    found = service.entries_for_reference("customer", customer.id, limit=limit + 1)
    mine = [e for e in found if e.reference_type == "customer" and e.reference_id == customer.id]
    return {
        "customer": customer.to_dict(),
        "data": entries_json(mine[:limit], bool(query.get("include_customer"))),
        "has_more": len(mine) > limit,
    }
