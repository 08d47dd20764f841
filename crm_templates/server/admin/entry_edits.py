"""The admin's entry writes (issue 12, item 3): edit one value, move an entry to a stage.

``POST /admin/entries/<entry_id>/values/<field_key>`` — form fields ``value`` (a multiselect
sends one ``value`` per checked option), ``csrf_token``, optional ``version`` and ``next``:

- the field is ``ui_editable: false`` → **403**, nothing changed (the seed: locked fields
  "cannot be inline-edited"; the page shows a lock instead of a form, the server refuses too);
- the core refuses the value (`Crm.update_entry`, the same validation as templates) → **422**
  with the core's message next to the value, nothing changed;
- ``version`` given and the entry changed since (another operator, a template) → **409**, the
  page shows the current value and the refused text, nothing changed. Without ``version`` the
  edit merges into the stored entry (last write wins for that one key);
- unknown entry or field → 404; no or a wrong CSRF token → 400 (before anything else); no
  ``value`` field (except for a multiselect, where no checked box means "none") → 400;
- success → 303 to ``next`` (an ``/admin/`` path: the table page the form was on) or the entry
  page. Refusals re-render that page with status 422/409 (the no-JavaScript flow).

``POST /admin/entries/<entry_id>/stage`` — form fields ``stage`` (id or slug), optional
``pipeline`` (id or slug), ``version``, ``next``: moves through
`crm_templates.stage_history.move_entry`, which records the change in the stage history with
the operator's id. Unknown stage/pipeline or a data-mode entity → 422; stale ``version`` → 409;
unknown entry → 404; success → 303 to ``next`` or the entry page.

Both answer JSON instead when the request asks for it (``Accept: application/json``, what
``admin/static/entries.js`` sends): ``{"ok": true, …}`` or ``{"ok": false, "error": message}``
with the same status codes. Every successful write is recorded with `record_action`
(``value.edit``, ``entry.stage``).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from flask import abort, jsonify, redirect, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from ...errors import CrmError, EntryNotFoundError, StaleEntryError
from ...stage_history import move_entry
from ...whole_numbers import parse_whole_number
from ..security import is_same_site_url
from ..state import state
from . import bp
from .context import operator_id, record_action
from .entries import detail_page, entity_or_404, entry_or_404, table_page
from .entry_cells import LOCKED_LABEL, Labels, entry_url, form_value, reference_ids


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def _next_url(default: str) -> str:
    """``next`` when it is an admin path of this site, else ``default``."""
    wanted = request.form.get("next", "")
    if wanted.startswith("/admin/") and is_same_site_url(wanted):
        return wanted
    return default


def _version() -> int | None:
    raw = request.form.get("version", "").strip()
    if not raw:
        return None
    version = parse_whole_number(raw)
    if version is None:
        abort(400, f"version must be a whole number (the entry's version); got {raw[:40]!r}.")
    return version


@bp.post("/entries/<entry_id>/values/<field_key>")
def edit_value(entry_id: str, field_key: str) -> ResponseReturnValue:
    """Edit one value (see the module docstring)."""
    entry = entry_or_404(entry_id)
    entity = entity_or_404(entry.entity)
    field = next((f for f in entity.fields if f.key == field_key), None)
    if field is None:
        abort(404, f"Entity {entity.slug!r} has no field {field_key!r}.")
    if not field.ui_editable:
        message = f"{field.label}: {LOCKED_LABEL.lower()} (ui_editable: false); scripts set it."
        if _wants_json():
            return jsonify(ok=False, error=message), 403
        abort(403, message)
    if "value" not in request.form and field.type != "multiselect":
        # (A multiselect with nothing checked sends no `value`: that clears it.)
        abort(400, "Send the new value in the form field 'value'.")
    version = _version()
    value = form_value(field, request.form)
    try:
        stored = state().crm.update_entry(
            entry_id, {field_key: value}, respect_ui_editable=True, expected_version=version
        )
    except EntryNotFoundError:
        abort(404, f"There is no entry {entry_id!r}.")
    except StaleEntryError as exc:
        return _refused(entry_id, field_key, str(exc), 409)
    except CrmError as exc:
        return _refused(entry_id, field_key, str(exc), 422)
    record_action("value.edit", entry_id=entry_id, entity=entity.slug, details={"field": field_key})
    if _wants_json():
        labels = Labels({entity.slug: entity})
        labels.prefetch(reference_ids([stored], [field]))
        return jsonify(ok=True, html=str(labels.render(stored, field)), version=stored.version)
    return redirect(_next_url(entry_url(entry_id)), code=303)


def _refused(entry_id: str, field_key: str, message: str, status: int) -> ResponseReturnValue:
    """The answer to a refused edit: JSON, or the page the form was on showing the error."""
    if _wants_json():
        return jsonify(ok=False, error=message), status
    entry = entry_or_404(entry_id)
    form = MultiDict(request.form)
    target = urlsplit(_next_url(""))
    if target.path == url_for("crm_admin.entity_entries", slug=entry.entity):
        args = MultiDict(parse_qsl(target.query))
        return table_page(
            entry.entity, args, error=(entry_id, field_key, message, form), status=status
        )
    return detail_page(entry, error=(field_key, message, form), status=status)


@bp.post("/entries/<entry_id>/stage")
def move_stage(entry_id: str) -> ResponseReturnValue:
    """Move an entry to a stage (see the module docstring)."""
    entry = entry_or_404(entry_id)
    entity = entity_or_404(entry.entity)
    stage = request.form.get("stage", "").strip()
    pipeline = request.form.get("pipeline", "").strip() or None
    version = _version()
    message = None
    status = 422
    if entity.mode != "crm":
        message = f"Entity {entity.slug!r} is in data mode: its entries have no stage."
    elif not stage:
        message = "Choose a stage to move the entry to."
    else:
        try:
            moved = move_entry(
                state().crm,
                entry_id,
                stage=stage,
                pipeline=pipeline,
                actor=operator_id(),
                expected_version=version,
            )
        except EntryNotFoundError:
            abort(404, f"There is no entry {entry_id!r}.")
        except StaleEntryError as exc:
            message, status = str(exc), 409
        except CrmError as exc:
            message = str(exc)
    if message is not None:
        if _wants_json():
            return jsonify(ok=False, error=message), status
        return detail_page(entry_or_404(entry_id), stage_error=message, status=status)
    if (moved.pipeline_id, moved.stage_id) != (entry.pipeline_id, entry.stage_id):
        # An entry already at that stage was not written: nothing to record.
        record_action(
            "entry.stage",
            entry_id=entry_id,
            entity=entity.slug,
            details={
                "from": entry.stage_id,
                "to": moved.stage_id,
                "pipeline": moved.pipeline_id,
            },
        )
    if _wants_json():
        return jsonify(
            ok=True, pipeline_id=moved.pipeline_id, stage_id=moved.stage_id, version=moved.version
        )
    return redirect(_next_url(entry_url(entry_id)), code=303)
