"""Entries in and out of the admin (issue 11, item 5: "the same as downloads/uploads in the
admin"): the CLI's ``export``/``import`` as a download and an upload, through the same core
(`crm_templates.transfer`), so formats, validation and formula escaping are the same.

- ``GET /admin/entities/<slug>/export.csv`` and ``export.jsonl``: every entry of the entity,
  oldest first, as an attachment (``Cache-Control: no-store``).
- ``GET /admin/entities/<slug>/import``: the upload form.
- ``POST /admin/entities/<slug>/import`` (multipart: ``file``, ``format`` csv|jsonl — default
  from the file name —, optional ``key`` column, ``dry_run``; CSRF): every row is checked
  first. Problems answer **422** with each line, column and message, and nothing is written; a
  dry run answers 200 with what would be done; a real import answers 200 with the summary and
  is recorded in the audit trail (``entries.import``). The upload is bounded by
  ``CRM_MAX_BODY`` (413 above it): import bigger files with ``crm-templates import``.
"""

from __future__ import annotations

import io

from flask import Response, abort, request, url_for
from flask.typing import ResponseReturnValue

from ...errors import CrmError
from ...transfer import FORMATS, export_entries, import_entries
from ..state import state
from . import bp
from .context import record_action, render_admin
from .entries import entity_or_404


def _format(value: str, filename: str = "") -> str | None:
    if value in FORMATS:
        return value
    for fmt in FORMATS:
        if filename.lower().endswith(f".{fmt}"):
            return fmt
    return None


@bp.get("/entities/<slug>/export.<fmt>")
def export_download(slug: str, fmt: str) -> ResponseReturnValue:
    """Every entry of the entity as a CSV or JSONL download."""
    entity = entity_or_404(slug)
    if fmt not in FORMATS:
        abort(404, f"Exports are CSV or JSONL ({', '.join(FORMATS)}), not {fmt!r}.")
    out = io.StringIO(newline="")
    export_entries(state().crm, entity.slug, out, fmt)
    kind = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = Response(out.getvalue(), mimetype=kind)
    response.headers["Content-Disposition"] = f'attachment; filename="{entity.slug}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/entities/<slug>/import", methods=["GET", "POST"])
def import_upload(slug: str) -> ResponseReturnValue:
    """The upload form, and the import it sends (see the module docstring)."""
    entity = entity_or_404(slug)
    crumbs = [
        ("Entities", url_for("crm_admin.entities")),
        (entity.name, url_for("crm_admin.entity", slug=entity.slug)),
        ("Entries", url_for("crm_admin.entity_entries", slug=entity.slug)),
    ]

    def show(status: int = 200, **context: object) -> ResponseReturnValue:
        return render_admin(
            "admin/import.html",
            title=f"Import {entity.plural_name or entity.name}",
            breadcrumbs=crumbs,
            status=status,
            entity=entity,
            form=request.form,
            **context,
        )

    if request.method == "GET":
        return show()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return show(422, error="Choose a CSV or JSONL file to import.")
    fmt = _format(request.form.get("format", ""), upload.filename)
    if fmt is None:
        return show(422, error="Choose the file's format (CSV or JSONL): its name does not say.")
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError:
        return show(422, error="The file is not UTF-8 text: save it as UTF-8 and try again.")
    key = request.form.get("key", "").strip() or None
    dry_run = bool(request.form.get("dry_run"))
    try:
        report = import_entries(
            state().crm, entity.slug, io.StringIO(text, newline=""), fmt, key=key, dry_run=dry_run
        )
    except CrmError as exc:
        return show(422, error=str(exc))
    if report.problems:
        return show(422, report=report)
    if report.written:
        record_action(
            "entries.import",
            entity=entity.slug,
            details={
                "file": upload.filename[:200],
                "format": fmt,
                "key": key,
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
            },
        )
    return show(200, report=report)
