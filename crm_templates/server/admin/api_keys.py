"""``/admin/api-keys``: the REST API's keys in the admin (issue 13, item 3).

- ``GET /admin/api-keys`` — every key (id, name, scope, prefix, rate limit, created, last
  used, revoked) and the form to create one.
- ``POST /admin/api-keys`` (``name``, ``scope`` read|write, optional ``rate_limit``; CSRF) —
  creates a key and answers with the one page that ever shows it (``Cache-Control:
  no-store``, a copy button); a bad value answers 422 with the form and nothing is created.
- ``GET /admin/api-keys/<id>/revoke`` — the confirmation; ``POST`` (CSRF) revokes the key
  and redirects (303) to the list. An unknown id is 404.

Creating and revoking are recorded in the audit trail (``apikey.create``, ``apikey.revoke``;
the key's id, name, scope and rate limit — never the key) with the operator's id. The key
itself goes into the response body only: not into the log, the audit trail, the session or a
flash message.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ... import api_keys as core
from ...cli_apikeys import audit_details, when
from ...errors import CrmValidationError
from ..state import state
from . import bp
from .context import NAVIGATION, record_action, render_admin

NAVIGATION.append(("API keys", "crm_admin.api_keys"))
NO_STORE = {"Cache-Control": "no-store"}


def _crumbs() -> list[tuple[str, str | None]]:
    return [("API keys", url_for("crm_admin.api_keys"))]


def _list(status: int = 200, errors: Sequence[tuple[str, str]] = ()) -> ResponseReturnValue:
    return render_admin(
        "admin/api_keys.html",
        title="API keys",
        status=status,
        keys=core.list_keys(state().crm.store),
        errors=list(errors),
        form=request.form,
        scopes=core.SCOPES,
        default_rate_limit=core.DEFAULT_RATE_LIMIT,
        max_rate_limit=core.MAX_RATE_LIMIT,
        when=when,
    )


def _rate_limit(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 9:
        raise CrmValidationError(
            f"the rate limit is a whole number of requests per minute from 1 to "
            f"{core.MAX_RATE_LIMIT}"
        )
    return int(text)


@bp.get("/api-keys", endpoint="api_keys")
def api_keys_page() -> ResponseReturnValue:
    """The keys and the create form."""
    return _list()


@bp.post("/api-keys", endpoint="api_key_create")
def api_key_create() -> ResponseReturnValue:
    """Create a key and show it, once."""
    form = request.form
    errors: list[tuple[str, str]] = []
    name, scope, rate_limit = form.get("name", ""), form.get("scope", ""), None
    try:
        name = core.check_name(name)
    except CrmValidationError as exc:
        errors.append(("key-name", str(exc)))
    try:
        scope = core.check_scope(scope)
    except CrmValidationError:
        errors.append(("key-scope-read", "Choose a scope: read or write."))
    try:
        rate_limit = _rate_limit(form.get("rate_limit", ""))
        if rate_limit is not None:
            core.check_rate_limit(rate_limit)
    except CrmValidationError as exc:
        errors.append(("key-rate-limit", str(exc)))
    if errors:
        return _list(422, errors)
    key, secret = core.create_key(state().crm.store, name=name, scope=scope, rate_limit=rate_limit)
    record_action("apikey.create", details=audit_details(key))
    body, status = render_admin(
        "admin/api_key_created.html",
        title=f"API key {key.name!r} created",
        breadcrumbs=_crumbs(),
        key=key,
        secret=secret,
        api_url=request.host_url.rstrip("/") + "/api/crm/",
    )
    return body, status, NO_STORE


def _key_or_404(key_id: str) -> core.ApiKey:
    try:
        return core.get_key(state().crm.store, key_id)
    except core.ApiKeyNotFoundError:
        abort(404, f"There is no API key {key_id!r}.")


@bp.route("/api-keys/<key_id>/revoke", methods=["GET", "POST"], endpoint="api_key_revoke")
def api_key_revoke(key_id: str) -> ResponseReturnValue:
    """Confirm (GET), then revoke (POST) the key."""
    key = _key_or_404(key_id)
    if request.method == "GET":
        return render_admin(
            "admin/api_key_revoke.html",
            title=f"Revoke API key {key.name!r}",
            breadcrumbs=_crumbs(),
            key=key,
            when=when,
        )
    revoked = core.revoke_key(state().crm.store, key.id)
    if not key.revoked:
        record_action("apikey.revoke", details=audit_details(revoked))
    flash(
        f"API key {revoked.name!r} ({revoked.id}) is revoked: it authenticates nothing now.",
        "notice",
    )
    return redirect(url_for("crm_admin.api_keys"), code=303)
