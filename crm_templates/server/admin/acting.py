"""Whom the admin's writes are attributed to in the entry signals (`crm_templates.events`;
issue 13, item 8): every admin request runs `events.acting_as` the signed-in operator, so an
inline edit, a board move or an upload sends its events with ``actor = {"type": "operator",
"id": <operator id>}`` (an upload: ``{"type": "import", "id": "operator <id>"}``)."""

from __future__ import annotations

import contextvars

from flask import g

from ... import events
from ..customers import current_operator_id
from . import bp

_TOKEN = "_crm_actor_token"


@bp.before_request
def act_as_operator() -> None:
    """Set the actor for this request (after the guard let an operator in)."""
    operator = current_operator_id()
    if operator is not None:
        setattr(g, _TOKEN, events.enter_actor(events.Actor("operator", operator)))


@bp.teardown_request
def stop_acting(exc: BaseException | None) -> None:
    """Reset the actor: the thread serves other requests next."""
    token: contextvars.Token[events.Actor | None] | None = g.pop(_TOKEN, None)
    if token is not None:
        events.leave_actor(token)
