"""Listing and searching customers for the command line (issue 11, item 6).

The `Store` interface lists customers newest first in pages; a search reads those pages and
keeps the customers whose id, email, first name, last name or full name contains the text,
ignoring case. That is a scan of every customer, fine for an operator's command, not for a page.
"""

from __future__ import annotations

from collections.abc import Iterator

from .model import Customer
from .storage.base import Store

PAGE = 500


def iter_customers(store: Store, page: int = PAGE) -> Iterator[Customer]:
    """Every customer, newest first, read ``page`` at a time."""
    offset = 0
    while True:
        batch = store.list_customers(limit=page, offset=offset)
        yield from batch
        if len(batch) < page:
            return
        offset += page


def matches(customer: Customer, text: str) -> bool:
    """Whether ``text`` occurs (case-insensitively) in the customer's id, email or names."""
    needle = text.casefold()
    haystack = (
        customer.id,
        customer.email or "",
        customer.first_name or "",
        customer.last_name or "",
        customer.name,
    )
    return any(needle in part.casefold() for part in haystack)


def find_customers(
    store: Store, search: str | None = None, *, limit: int | None = None
) -> tuple[list[Customer], int]:
    """Customers matching ``search`` (all when None or empty), newest first, at most ``limit``
    of them; and how many matched in all."""
    found: list[Customer] = []
    total = 0
    for customer in iter_customers(store):
        if search and not matches(customer, search):
            continue
        total += 1
        if limit is None or len(found) < limit:
            found.append(customer)
    return found, total


__all__ = ["find_customers", "iter_customers", "matches"]
