"""What a view of the service may write (issue 8, faults 6 and 7; SPEC §5 and §8).

`Crm.bind` makes the views that templates and page backends use; two rules limit them, and
both are decided here:

* **Previews never write.** A read-only view (``bind(..., read_only=True)``: an operator
  preview, ``crm-templates render``) reaches the store only through a `ReadOnlyStore`, which
  answers the methods listed in `STORE_READS` and refuses everything else with
  `PreviewError`. The list names the *reads*, so a writing method added to `Store` later is
  refused until someone declares it a read: the rule fails closed. On top of that backstop
  the service answers clearly: its CRM write functions return a preview result
  (``{ok: False, error: 'preview', preview: True, message}``, so a template still renders),
  and its other writing methods (``update_entry``, ``delete_entry``, ``create_customer`` …)
  raise `PreviewError`.
* **ReassignCrmReference is restricted outside trusted code.** The service itself
  (``Crm(store)``, used directly by Python code such as the sign-in flow) reassigns freely.
  Every view carries a `ReassignRule` and may only move the session's own anonymous visitor
  reference onto the current signed-in customer, as the seed's platform does; otherwise the
  call returns ``{ok: False, error: 'forbidden'}`` (source) or ``'forbidden_target'`` (target)
  and moves nothing.

* **A view reaches only shared entries and its own customer's.** Entries attached to another
  customer (``reference_type == 'customer'``, another id) cannot be named by id from a view:
  not as a reference field's target (their labels would show that customer's data), not as a
  label in a render, not as a relation's ``entryId``. Such an id is answered exactly like an
  id that does not exist, so a visitor cannot learn which ids are real (`may_reach`).
  Entries of any other reference type (``site``/``catalog`` data) are shared.

Views never gain rights by binding again: a view of a read-only view is read-only, and a view
of a view keeps its reassign rule.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NoReturn

from .errors import PreviewError
from .model import Entry
from .storage.base import Store

IdSource = Callable[[], "str | None"]

#: The `Store` methods a read-only view may call. Everything else is refused.
STORE_READS = frozenset(
    {
        "get_entity",
        "list_entities",
        "get_customer",
        "get_customer_by_email",
        "list_customers",
        "count_customers",
        "get_entries_by_ids",
        "get_entry",
        "find_entries",
        "latest_values",
        "count_entries",
        "iter_entries",
        # crm_templates.storage.entity_queries (issue 12, item 2)
        "count_entries_with_field",
        "count_entries_by_field",
        "count_entries_by_stage",
        "entity_versions",
        # crm_templates.storage.boards (issue 12, item 4)
        "stage_totals",
        "stage_cards",
        "aggregate",  # the Reports tab's aggregations (issue 12)
        "prefetch_values",  # crm_templates.storage.prefetch (issue 14, item 1)
    }
)
#: Every public method of the `Store` interface.
STORE_METHODS = frozenset(
    name for name in dir(Store) if not name.startswith("_") and callable(getattr(Store, name))
)
#: The methods a read-only view refuses: writes, transaction control (``atomic`` and ``batch``
#: exist only for writes; SQLite's takes the write lock) and ``close`` (the store is shared).
STORE_WRITES = STORE_METHODS - STORE_READS
#: Reads of the server's own records — security records, operator accounts and the audit trail
#: (issue 12): refused too (page code has no business with them), with a message that does not
#: call them writes.
STORE_SERVER_READS = frozenset(
    {
        "is_token_claimed",
        "count_rate_hits",
        "session_generation",
        "get_operator",
        "get_operator_by_email",
        "list_operators",
        "has_operators",
        "list_audit_records",
        "get_api_key",  # crm_templates.storage.api_keys (issue 13, item 3)
        "list_api_keys",
        # crm_templates.storage.webhooks (issue 13, item 8): endpoints hold signing secrets
        "get_webhook_endpoint",
        "list_webhook_endpoints",
        "get_webhook_delivery",
        "list_webhook_deliveries",
        "session_state",  # crm_templates.storage.session_state (issue 14, B5)
    }
)


def may_reach(entry: Entry, customer_id: str | None) -> bool:
    """Whether a view bound to ``customer_id`` may name ``entry`` by id: shared entries (any
    reference type but ``'customer'``) and ``customer_id``'s own (issue 8: a visitor's form
    value copied into a reference field showed another customer's entry)."""
    return entry.reference_type != "customer" or (
        customer_id is not None and entry.reference_id == customer_id
    )


def preview_message(what: str) -> str:
    """The message of every refused preview write, e.g. ``previews are read-only: SetCrmField
    was not written``."""
    return f"previews are read-only: {what} was not written (nothing was changed)"


def _refuse(what: str) -> NoReturn:
    raise PreviewError(preview_message(what))


class ReadOnlyStore(Store):
    """A read-only view of ``store``: reads pass through, every other method raises
    `PreviewError`, and so does any public attribute a backend adds (a client, a connection)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.url = store.url

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the interface does not define: backend extras.
        if name.startswith("_"):
            raise AttributeError(name)
        _refuse(f"Store.{name}")

    def __repr__(self) -> str:
        return f"ReadOnlyStore({self._store!r})"


def _reader(name: str) -> Callable[..., Any]:
    def read(self: ReadOnlyStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._store, name)(*args, **kwargs)

    read.__name__ = read.__qualname__ = name
    read.__doc__ = getattr(Store, name).__doc__
    return read


def _refuser(name: str) -> Callable[..., NoReturn]:
    def refuse(self: ReadOnlyStore, *args: Any, **kwargs: Any) -> NoReturn:
        if name in STORE_SERVER_READS:
            raise PreviewError(
                f"previews are read-only: Store.{name}() (the server's own records) is "
                "not available in a preview (nothing was changed)"
            )
        _refuse(f"Store.{name}()")

    refuse.__name__ = refuse.__qualname__ = name
    refuse.__doc__ = f"Refused: a read-only view does not call Store.{name}."
    return refuse


for _name in STORE_METHODS:
    setattr(ReadOnlyStore, _name, _reader(_name) if _name in STORE_READS else _refuser(_name))
abc.update_abstractmethods(ReadOnlyStore)  # type: ignore[type-abstract]


def read_only_store(store: Store) -> Store:
    """``store`` behind a `ReadOnlyStore` (once: a read-only view of one is itself)."""
    if isinstance(store, ReadOnlyStore):
        return store
    return ReadOnlyStore(store)  # type: ignore[abstract]  # methods are set above


# --- ReassignCrmReference -------------------------------------------------------------------


REASSIGN_REFUSALS = {
    "forbidden": (
        "ReassignCrmReference from a template or page backend may only move this session's own "
        "anonymous visitor (fromReferenceType 'customer', fromReferenceId the visitor's id); "
        "nothing was moved. Trusted Python code reassigns through the service itself."
    ),
    "forbidden_target": (
        "ReassignCrmReference from a template or page backend may only move entries onto the "
        "current signed-in customer (leave toReferenceType and toReferenceId out); nothing was "
        "moved."
    ),
}


class ReassignRule:
    """The one ReassignCrmReference a view may perform (SPEC §5).

    ``visitor()`` returns the id of the session's own anonymous visitor (a ``customer``
    reference) or None; ``customer()`` the id of the current signed-in customer or None; without
    ``customer``, the customer the view was bound to (``bound``: an id, or a provider asked with
    ``create=False``) is the signed-in one. They are asked at the time of the call. With no
    session (a bare Jinja environment) there is no visitor, so every reassign is refused.
    """

    # A plain class: the page server and the template extension make one per bind.
    __slots__ = ("bound", "customer", "visitor")

    def __init__(
        self,
        visitor: IdSource | None,
        customer: IdSource | None,
        bound: str | Callable[[bool], str | None] | None,
    ) -> None:
        self.visitor = visitor
        self.customer = customer
        self.bound = bound

    def _target(self) -> str | None:
        if self.customer is not None:
            return self.customer()
        bound = self.bound
        return bound if bound is None or isinstance(bound, str) else bound(False)

    def refusal(self, source: tuple[str, str], target: tuple[str, str] | None) -> str | None:
        """``'forbidden'``, ``'forbidden_target'`` or None (allowed) for this move."""
        visitor = None if self.visitor is None else self.visitor()
        if visitor is None or source != ("customer", visitor):
            return "forbidden"
        customer = self._target()
        if customer is None or target != ("customer", customer):
            return "forbidden_target"
        return None
