"""``POST /admin/entries/<entry_id>/stage``: move one entry to another stage (issue 12).

Form fields: ``stage`` (a stage slug or id), optional ``pipeline`` (slug or id, to choose
among pipelines declaring the same stage slug), ``csrf_token`` (checked before the view: 400
without it), optional ``next`` (where to go afterwards). Answers:

- 404 for an unknown entry; 422 with the core's message for a missing, unknown or ambiguous
  stage or pipeline, or an entry of a data-mode entity — nothing changed;
- success: the move is recorded (``record_action("entry.stage")`` with from → to) and the
  browser is sent (303) to ``next`` when it is a same-site URL, else to the entry's page;
- with ``Accept: application/json`` (the board's script), every answer is JSON instead:
  ``{"ok": true, "entry_id", "stage", "stage_id", "stage_name", "pipeline", "from_stage",
  "changed"}`` or ``{"ok": false, "error"}`` with the status above.

The move itself is `crm_templates.boards.move_entry_to_stage` (core, compare-and-set).
"""

from __future__ import annotations

from typing import Any

from flask import abort, jsonify, redirect, request
from flask.typing import ResponseReturnValue

from ...boards import move_entry_to_stage
from ...errors import CrmValidationError, EntryNotFoundError
from ..security import is_same_site_url
from ..state import state
from . import bp
from .boards import entry_url
from .context import record_action, render_admin


def _wants_json() -> bool:
    """True when the client asks for JSON over HTML (the board's script does)."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def _refused(status: int, message: str, back: str | None) -> ResponseReturnValue:
    if _wants_json():
        return jsonify({"ok": False, "error": message}), status
    if status == 404:
        abort(404, message)
    return render_admin(
        "admin/stage_refused.html",
        title="Stage not changed",
        status=status,
        message=message,
        back=back,
    )


@bp.post("/entries/<entry_id>/stage")
def move_stage(entry_id: str) -> ResponseReturnValue:
    """Move the entry to the form's ``stage`` (see the module docstring)."""
    crm = state().crm
    wanted_next = request.form.get("next", "")
    back = wanted_next if wanted_next and is_same_site_url(wanted_next) else None
    entry = crm.get_entry(entry_id)
    if entry is None:
        return _refused(404, f"There is no entry {entry_id!r}.", back)
    stage = request.form.get("stage", "").strip()
    pipeline = request.form.get("pipeline", "").strip() or None
    if not stage:
        return _refused(422, "Choose a stage to move the entry to (form field 'stage').", back)
    try:
        moved = move_entry_to_stage(crm, entry_id, stage, pipeline)
    except EntryNotFoundError as exc:
        return _refused(404, str(exc), back)
    except CrmValidationError as exc:
        return _refused(422, str(exc), back)
    from_slug = moved.from_stage.slug if moved.from_stage is not None else None
    if moved.changed:
        details: dict[str, Any] = {
            "pipeline": moved.pipeline.slug,
            "from": from_slug,
            "to": moved.to_stage.slug,
        }
        record_action("entry.stage", entry_id=entry_id, entity=entry.entity, details=details)
    if _wants_json():
        return jsonify(
            {
                "ok": True,
                "entry_id": entry_id,
                "stage": moved.to_stage.slug,
                "stage_id": moved.to_stage.id,
                "stage_name": moved.to_stage.name,
                "pipeline": moved.pipeline.slug,
                "from_stage": from_slug,
                "changed": moved.changed,
            }
        )
    return redirect(back or entry_url(entry_id), 303)
