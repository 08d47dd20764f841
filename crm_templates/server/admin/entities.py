"""``/admin/entities…``: list, inspect, create and edit entities, their fields, pipelines and
stages (issue 12, item 2; SPEC §3, §8).

Every write goes through `crm_templates.entity_admin` (validation by EnsureCrmEntity's code,
compare-and-set on the entity's version) and is recorded with `record_action`. Each form
carries the entity's ``version``; the answers are:

- success → 303 to the entity's page (with a notice);
- invalid input → 422, the form again with the core's message next to its input, nothing
  changed;
- a form made from an older version (another operator saved in between) → 409, the message,
  nothing changed;
- removing a field entries hold, without ``confirm`` → 200, the confirmation step with the
  count, nothing changed;
- missing CSRF token → 400 (the server's CSRF check, before the view).

URLs (beside the entries, reports and board pages of other modules, which are linked only):
``GET|POST /admin/entities`` (list; create), ``GET /admin/entities/<slug>``,
``GET|POST …/<slug>/settings``, ``GET|POST …/<slug>/fields`` (add),
``GET|POST …/<slug>/fields/<key>`` (edit), ``GET|POST …/<slug>/fields/<key>/remove``,
``GET|POST …/<slug>/pipelines`` (add), ``GET|POST …/<slug>/pipelines/<p>/settings``
(rename), ``POST …/<slug>/pipelines/<p>/remove``, ``GET|POST …/<slug>/pipelines/<p>/stages``
(add), ``GET|POST …/<slug>/pipelines/<p>/stages/<s>`` (edit), ``POST …/stages/<s>/move``
(``direction`` up|down), ``POST …/stages/<s>/remove``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from ... import entity_admin as ea
from ...colours import css_colour
from ...errors import UnknownEntityError, UnknownFieldError
from ...model import (
    AGGREGATION_TYPES,
    CHART_TYPES,
    ENTITY_MODES,
    FIELD_TYPES,
    OPTION_TYPES,
    REFERENCE_TYPES,
    SEMANTIC_STATUSES,
    Entity,
    Field,
    Pipeline,
    ReportingConfig,
    Stage,
)
from ..state import state
from . import bp
from .context import NAVIGATION, record_action, render_admin

NAVIGATION.append(("Entities", "crm_admin.entities"))

_FALLBACK_SWATCH = "#64748b"


# --- helpers --------------------------------------------------------------------------------


def _crm() -> Any:
    return state().crm


def _entity_or_404(slug: str) -> Entity:
    entity = _crm().store.get_entity(slug)
    if entity is None:
        abort(404, f"There is no entity {slug!r}.")
    return entity


def _pipeline_or_404(entity: Entity, pipeline_slug: str) -> Pipeline:
    for p in entity.pipelines:
        if p.slug == pipeline_slug:
            return p
    abort(404, f"Entity {entity.slug!r} has no pipeline {pipeline_slug!r}.")


def _stage_or_404(pipeline: Pipeline, stage_slug: str) -> Stage:
    for s in pipeline.stages:
        if s.slug == stage_slug:
            return s
    abort(404, f"Pipeline {pipeline.slug!r} has no stage {stage_slug!r}.")


def _field_or_404(entity: Entity, key: str) -> Field:
    for f in entity.fields:
        if f.key == key:
            return f
    abort(404, f"Entity {entity.slug!r} has no field {key!r}.")


def swatch(colour: str | None) -> str:
    """A colour safe for a ``style`` attribute (`css_colour`), or the neutral fallback."""
    return css_colour(colour) or _FALLBACK_SWATCH


def _entity_url(slug: str) -> str:
    return url_for("crm_admin.entity", slug=slug)


def _links(slug: str) -> dict[str, str]:
    """Plain links to the pages of the entries, reports and boards modules (issue 12 URLs)."""
    base = _entity_url(slug)
    return {
        "entries": f"{base}/entries",
        "reports": f"{base}/reports",
        "pipelines": f"{base}/pipelines",
    }


def _crumbs(entity: Entity | None = None) -> list[tuple[str, str | None]]:
    crumbs: list[tuple[str, str | None]] = [("Entities", url_for("crm_admin.entities"))]
    if entity is not None:
        crumbs.append((entity.name, _entity_url(entity.slug)))
    return crumbs


def _done(slug: str, message: str, action: str, details: Mapping[str, Any]) -> ResponseReturnValue:
    record_action(action, entity=slug, details=details)
    flash(message, "notice")
    return redirect(_entity_url(slug), code=303)


class _FormError(Exception):
    """A form value the view could not turn into the core's input (a number, JSON)."""

    def __init__(self, message: str, input: str) -> None:
        super().__init__(message)
        self.input = input


def _number(name: str, label: str) -> float | None:
    text = request.form.get(name, "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise _FormError(f"{label} must be a number (e.g. 50); got {text!r}", name) from None
    if not math.isfinite(value):
        raise _FormError(f"{label} must be a finite number; got {text!r}", name)
    return value


def _attempt(
    run: Callable[[], ResponseReturnValue],
    show: Callable[[int, dict[str, str]], ResponseReturnValue],
) -> ResponseReturnValue:
    """Run an edit; on refusal show the form again with the message and its status."""
    try:
        return run()
    except _FormError as exc:
        return show(422, {exc.input: str(exc)})
    except ea.StaleEntityError as exc:
        return show(409, {"": str(exc)})
    except ea.InvalidEdit as exc:
        if exc.input in ("pipeline", "stage"):
            abort(404, str(exc))
        return show(422, {exc.input or "": str(exc)})
    except (UnknownEntityError, UnknownFieldError) as exc:
        abort(404, str(exc))


# --- list and create ------------------------------------------------------------------------


def _entity_form_values(entity: Entity | None = None) -> dict[str, Any]:
    if request.method == "POST":
        return {
            k: request.form.get(k, "")
            for k in ("slug", "name", "singular_name", "plural_name", "icon", "color", "mode")
        }
    if entity is None:
        return {"mode": "crm"}
    return {
        "slug": entity.slug,
        "name": entity.name,
        "singular_name": entity.singular_name,
        "plural_name": entity.plural_name,
        "icon": entity.icon or "",
        "color": entity.color or "",
        "mode": entity.mode,
    }


@bp.route("/entities", methods=["GET", "POST"])
def entities() -> ResponseReturnValue:
    """The entities (name, slug, colour, mode, entries) and the form creating one."""
    crm = _crm()

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        rows = [
            (e, crm.store.count_entries(e.slug), _links(e.slug)) for e in crm.store.list_entities()
        ]
        return render_admin(
            "admin/entities.html",
            title="Entities",
            breadcrumbs=[],
            status=status,
            rows=rows,
            form=_entity_form_values(),
            errors=dict(errors or {}),
            modes=ENTITY_MODES,
            swatch=swatch,
        )

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        form = request.form
        entity = ea.create_entity(
            crm,
            form.get("slug", "").strip(),
            name=form.get("name"),
            singular_name=form.get("singular_name"),
            plural_name=form.get("plural_name"),
            icon=form.get("icon"),
            color=form.get("color"),
            mode=form.get("mode", "crm"),
        )
        return _done(
            entity.slug,
            f"Entity {entity.name!r} created.",
            "entity.create",
            {"slug": entity.slug, "mode": entity.mode},
        )

    return _attempt(run, show)


# --- one entity -----------------------------------------------------------------------------


@bp.get("/entities/<slug>")
def entity(slug: str) -> ResponseReturnValue:
    """An entity's fields, pipelines and stages, with their entry counts and edit links."""
    entity = _entity_or_404(slug)
    store = _crm().store
    by_field = store.count_entries_by_field(slug)  # one pass for every key
    held = {f.key: by_field.get(f.key, 0) for f in entity.fields}
    kept = {k: n for k, n in sorted(by_field.items()) if k not in held}
    by_stage = store.count_entries_by_stage(slug)
    return render_admin(
        "admin/entities_detail.html",
        title=entity.name,
        breadcrumbs=_crumbs(),
        entity=entity,
        total=store.count_entries(slug),
        held=held,
        kept=kept,
        by_stage=by_stage,
        links=_links(slug),
        swatch=swatch,
        reference_types=REFERENCE_TYPES,
    )


@bp.route("/entities/<slug>/settings", methods=["GET", "POST"])
def entity_settings(slug: str) -> ResponseReturnValue:
    """Edit name, singular/plural names, icon, colour and mode."""
    current = _entity_or_404(slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return render_admin(
            "admin/entities_settings.html",
            title=f"Settings of {current.name}",
            breadcrumbs=_crumbs(current),
            status=status,
            entity=current,
            version=request.form.get("version", current.version),
            form=_entity_form_values(current),
            errors=dict(errors or {}),
            modes=ENTITY_MODES,
        )

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        form = request.form
        stored = ea.update_entity(
            _crm(),
            slug,
            form.get("version"),
            name=form.get("name"),
            singular_name=form.get("singular_name"),
            plural_name=form.get("plural_name"),
            icon=form.get("icon"),
            color=form.get("color"),
            mode=form.get("mode") or None,
        )
        return _done(
            slug,
            "Settings saved.",
            "entity.update",
            {"name": stored.name, "mode": stored.mode, "version": stored.version},
        )

    return _attempt(run, show)


# --- fields ---------------------------------------------------------------------------------


def _options_text(f: Field | None) -> str:
    if f is None:
        return ""
    return "\n".join(o.value if o.value == o.label else f"{o.value} | {o.label}" for o in f.options)


def _field_form_values(f: Field | None) -> dict[str, Any]:
    if request.method == "POST":
        form = request.form
        values: dict[str, Any] = {k: form.get(k, "") for k in (
            "key", "label", "type", "options", "target_entity", "display_field",
            "aggregation_type", "preferred_chart", "bucket_size", "baseline_min",
            "baseline_max", "validation_rules",
        )}  # fmt: skip
        values["ui_editable"] = form.get("ui_editable") == "on"
        values["reportable"] = form.get("reportable") == "on"
        return values
    if f is None:
        return {"type": "text", "ui_editable": True, "reportable": False}
    rc = f.reporting_config or ReportingConfig(reportable=False)

    def num(x: float | None) -> str:
        return "" if x is None else f"{x:g}"

    return {
        "key": f.key,
        "label": f.label,
        "type": f.type,
        "options": _options_text(f),
        "target_entity": f.target_entity or "",
        "display_field": f.display_field or "",
        "ui_editable": f.ui_editable,
        "reportable": rc.reportable,
        "aggregation_type": rc.aggregation_type or "",
        "preferred_chart": rc.preferred_chart or "",
        "bucket_size": num(rc.bucket_size),
        "baseline_min": num(rc.baseline_min),
        "baseline_max": num(rc.baseline_max),
        "validation_rules": ""
        if f.validation_rules is None
        else json.dumps(f.validation_rules, indent=2, ensure_ascii=False),
    }


def _field_definition() -> dict[str, Any]:
    """The posted field form as EnsureCrmEntity's field definition (None: attribute unset)."""
    form = request.form
    ftype = form.get("type", "text")
    options: list[dict[str, str]] | None = None
    if ftype in OPTION_TYPES:
        options = []
        for line in form.get("options", "").splitlines():
            if not line.strip():
                continue
            value, sep, label = line.partition("|")
            value = value.strip()
            options.append({"value": value, "label": label.strip() if sep else value})
    reporting: dict[str, Any] | None = None
    rc_values = {
        "aggregation_type": form.get("aggregation_type") or None,
        "preferred_chart": form.get("preferred_chart") or None,
        "bucket_size": _number("bucket_size", "Bucket size"),
    }
    lo, hi = (
        _number("baseline_min", "Baseline minimum"),
        _number("baseline_max", "Baseline maximum"),
    )
    reportable = form.get("reportable") == "on"
    if reportable or any(v is not None for v in (*rc_values.values(), lo, hi)):
        reporting = {
            "reportable": reportable,
            **{k: v for k, v in rc_values.items() if v is not None},
        }
        if lo is not None or hi is not None:
            reporting["baseline"] = {"min": lo, "max": hi}
    rules_text = form.get("validation_rules", "").strip()
    rules: Any = None
    if rules_text:
        try:
            rules = json.loads(rules_text)
        except ValueError as exc:
            raise _FormError(
                f'Validation rules must be JSON (e.g. {{"required": true}}): {exc}',
                "validation_rules",
            ) from None
    return {
        "key": form.get("key", "").strip(),
        "label": form.get("label", "").strip() or None,
        "type": ftype,
        "options": options,
        "ui_editable": form.get("ui_editable") == "on",
        "reporting_config": reporting,
        "target_entity": (form.get("target_entity") or None) if ftype in REFERENCE_TYPES else None,
        "display_field": (form.get("display_field", "").strip() or None)
        if ftype in REFERENCE_TYPES
        else None,
        "validation_rules": rules,
    }


def _show_field_form(
    current: Entity, f: Field | None, status: int, errors: Mapping[str, str]
) -> ResponseReturnValue:
    return render_admin(
        "admin/entities_field.html",
        title=f"Field {f.key}" if f else f"Add a field to {current.name}",
        breadcrumbs=_crumbs(current),
        status=status,
        entity=current,
        field=f,
        version=request.form.get("version", current.version),
        form=_field_form_values(f),
        errors=dict(errors),
        field_types=FIELD_TYPES,
        aggregation_types=AGGREGATION_TYPES,
        chart_types=CHART_TYPES,
        targets=[e.slug for e in _crm().store.list_entities()],
        held=None if f is None else _crm().store.count_entries_with_field(current.slug, f.key),
        safe_types=sorted(n for o, n in ea.SAFE_TYPE_CHANGES if f and o == f.type),
    )


@bp.route("/entities/<slug>/fields", methods=["GET", "POST"])
def field_add(slug: str) -> ResponseReturnValue:
    """Add a field (key, label, type, options, lock, reporting, reference target, rules)."""
    current = _entity_or_404(slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return _show_field_form(current, None, status, errors or {})

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        definition = {k: v for k, v in _field_definition().items() if v is not None}
        stored = ea.add_field(_crm(), slug, request.form.get("version"), definition)
        f = stored.fields[-1]
        return _done(
            slug,
            f"Field {f.key!r} added.",
            "field.add",
            {"key": f.key, "type": f.type, "version": stored.version},
        )

    return _attempt(run, show)


@bp.route("/entities/<slug>/fields/<key>", methods=["GET", "POST"])
def field_edit(slug: str, key: str) -> ResponseReturnValue:
    """Edit a field's label, type (refused with values unless safe), options, lock,
    reporting config, reference target and validation rules."""
    current = _entity_or_404(slug)
    f = _field_or_404(current, key)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return _show_field_form(current, f, status, errors or {})

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        changes = _field_definition()
        del changes["key"]
        stored = ea.update_field(_crm(), slug, request.form.get("version"), key, changes)
        new = next(x for x in stored.fields if x.key == key)
        return _done(
            slug,
            f"Field {key!r} saved.",
            "field.update",
            {"key": key, "type": new.type, "version": stored.version},
        )

    return _attempt(run, show)


@bp.route("/entities/<slug>/fields/<key>/remove", methods=["GET", "POST"])
def field_remove(slug: str, key: str) -> ResponseReturnValue:
    """Remove a field: a confirmation step saying how many entries hold it (the POST without
    ``confirm`` answers with the count and changes nothing); the values stay in the entries."""
    current = _entity_or_404(slug)
    f = _field_or_404(current, key)
    crm = _crm()

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return render_admin(
            "admin/entities_field_remove.html",
            title=f"Remove field {key}",
            breadcrumbs=_crumbs(current),
            status=status,
            entity=current,
            field=f,
            version=request.form.get("version", current.version),
            held=crm.store.count_entries_with_field(slug, key),
            errors=dict(errors or {}),
        )

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        confirm = request.form.get("confirm") == "yes"
        try:
            removal = ea.remove_field(crm, slug, request.form.get("version"), key, confirm=confirm)
        except ea.ConfirmationRequired:
            return show()
        return _done(
            slug,
            f"Field {key!r} removed"
            + (
                f"; {removal.values_kept} entries keep their values of it."
                if removal.values_kept
                else "."
            ),
            "field.remove",
            {"key": key, "values_kept": removal.values_kept, "version": removal.entity.version},
        )

    return _attempt(run, show)


# --- pipelines ------------------------------------------------------------------------------


@bp.route("/entities/<slug>/pipelines", methods=["GET", "POST"])
def pipeline_add(slug: str) -> ResponseReturnValue:
    """Add a pipeline with its first stage (CRM mode only)."""
    current = _entity_or_404(slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        form = (
            request.form if request.method == "POST" else {"stage_slug": "new", "stage_name": "New"}
        )
        return render_admin(
            "admin/entities_pipeline.html",
            title=f"Add a pipeline to {current.name}",
            breadcrumbs=_crumbs(current),
            status=status,
            entity=current,
            pipeline=None,
            version=request.form.get("version", current.version),
            form=form,
            errors=dict(errors or {}),
        )

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        form = request.form
        definition = {
            "slug": form.get("slug", "").strip(),
            "name": form.get("name", "").strip() or None,
            "stages": [
                {
                    "slug": form.get("stage_slug", "").strip(),
                    "name": form.get("stage_name", "").strip() or None,
                }
            ],
        }
        try:
            stored = ea.add_pipeline(_crm(), slug, form.get("version"), definition)
        except ea.InvalidEdit as exc:
            if exc.input == "stages":
                exc.input = "stage_slug"
            raise
        return _done(
            slug,
            f"Pipeline {definition['slug']!r} added.",
            "pipeline.add",
            {"pipeline": definition["slug"], "version": stored.version},
        )

    return _attempt(run, show)


@bp.route("/entities/<slug>/pipelines/<pipeline_slug>/settings", methods=["GET", "POST"])
def pipeline_settings(slug: str, pipeline_slug: str) -> ResponseReturnValue:
    """Rename a pipeline (and the form removing it)."""
    current = _entity_or_404(slug)
    pipeline = _pipeline_or_404(current, pipeline_slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        form = request.form if request.method == "POST" else {"name": pipeline.name}
        return render_admin(
            "admin/entities_pipeline.html",
            title=f"Pipeline {pipeline.name}",
            breadcrumbs=_crumbs(current),
            status=status,
            entity=current,
            pipeline=pipeline,
            version=request.form.get("version", current.version),
            form=form,
            errors=dict(errors or {}),
        )

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        stored = ea.update_pipeline(
            _crm(), slug, request.form.get("version"), pipeline_slug, name=request.form.get("name")
        )
        return _done(
            slug,
            f"Pipeline {pipeline_slug!r} saved.",
            "pipeline.update",
            {"pipeline": pipeline_slug, "version": stored.version},
        )

    return _attempt(run, show)


@bp.post("/entities/<slug>/pipelines/<pipeline_slug>/remove")
def pipeline_remove(slug: str, pipeline_slug: str) -> ResponseReturnValue:
    """Remove a pipeline no entry sits in (refused with the count otherwise)."""
    current = _entity_or_404(slug)
    pipeline = _pipeline_or_404(current, pipeline_slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return render_admin(
            "admin/entities_pipeline.html",
            title=f"Pipeline {pipeline.name}",
            breadcrumbs=_crumbs(current),
            status=status,
            entity=current,
            pipeline=pipeline,
            version=request.form.get("version", current.version),
            form={"name": pipeline.name},
            errors={"remove": next(iter((errors or {}).values()), "")},
        )

    def run() -> ResponseReturnValue:
        stored = ea.remove_pipeline(_crm(), slug, request.form.get("version"), pipeline_slug)
        return _done(
            slug,
            f"Pipeline {pipeline_slug!r} removed.",
            "pipeline.remove",
            {"pipeline": pipeline_slug, "version": stored.version},
        )

    return _attempt(run, show)


# --- stages ---------------------------------------------------------------------------------


def _stage_form(stage: Stage | None) -> Mapping[str, Any]:
    if request.method == "POST":
        return request.form
    if stage is None:
        return {"semantic_status": "open"}
    return {
        "slug": stage.slug,
        "name": stage.name,
        "color": stage.color or "",
        "semantic_status": stage.semantic_status,
        "probability": "" if stage.probability is None else f"{stage.probability:g}",
    }


def _stage_changes() -> dict[str, Any]:
    form = request.form
    return {
        "name": form.get("name", "").strip() or None,
        "color": form.get("color", "").strip() or None,
        "semantic_status": form.get("semantic_status") or "open",
        "probability": _number("probability", "Probability"),
    }


def _show_stage(
    current: Entity,
    pipeline: Pipeline,
    stage: Stage | None,
    status: int,
    errors: Mapping[str, str],
) -> ResponseReturnValue:
    return render_admin(
        "admin/entities_stage.html",
        title=f"Stage {stage.name}" if stage else f"Add a stage to {pipeline.name}",
        breadcrumbs=_crumbs(current),
        status=status,
        entity=current,
        pipeline=pipeline,
        stage=stage,
        version=request.form.get("version", current.version),
        form=_stage_form(stage),
        errors=dict(errors),
        statuses=SEMANTIC_STATUSES,
        held=None
        if stage is None
        else _crm().store.count_entries_by_stage(current.slug).get(stage.id, 0),
    )


@bp.route("/entities/<slug>/pipelines/<pipeline_slug>/stages", methods=["GET", "POST"])
def stage_add(slug: str, pipeline_slug: str) -> ResponseReturnValue:
    """Add a stage at the end of a pipeline."""
    current = _entity_or_404(slug)
    pipeline = _pipeline_or_404(current, pipeline_slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return _show_stage(current, pipeline, None, status, errors or {})

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        definition = {"slug": request.form.get("slug", "").strip(), **_stage_changes()}
        definition = {k: v for k, v in definition.items() if v is not None}
        stored = ea.add_stage(_crm(), slug, request.form.get("version"), pipeline_slug, definition)
        return _done(
            slug,
            f"Stage {definition['slug']!r} added to {pipeline_slug!r}.",
            "stage.add",
            {"pipeline": pipeline_slug, "stage": definition["slug"], "version": stored.version},
        )

    return _attempt(run, show)


@bp.route("/entities/<slug>/pipelines/<pipeline_slug>/stages/<stage_slug>", methods=["GET", "POST"])
def stage_edit(slug: str, pipeline_slug: str, stage_slug: str) -> ResponseReturnValue:
    """Rename a stage, set its colour, semantic status and probability."""
    current = _entity_or_404(slug)
    pipeline = _pipeline_or_404(current, pipeline_slug)
    stage = _stage_or_404(pipeline, stage_slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return _show_stage(current, pipeline, stage, status, errors or {})

    if request.method == "GET":
        return show()

    def run() -> ResponseReturnValue:
        stored = ea.update_stage(
            _crm(), slug, request.form.get("version"), pipeline_slug, stage_slug, _stage_changes()
        )
        return _done(
            slug,
            f"Stage {stage_slug!r} saved.",
            "stage.update",
            {"pipeline": pipeline_slug, "stage": stage_slug, "version": stored.version},
        )

    return _attempt(run, show)


@bp.post("/entities/<slug>/pipelines/<pipeline_slug>/stages/<stage_slug>/move")
def stage_move(slug: str, pipeline_slug: str, stage_slug: str) -> ResponseReturnValue:
    """Move a stage one place up or down (``direction``); the entity page's buttons."""
    current = _entity_or_404(slug)
    pipeline = _pipeline_or_404(current, pipeline_slug)
    stage = _stage_or_404(pipeline, stage_slug)
    direction = request.form.get("direction", "")

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return _show_stage(
            current, pipeline, stage, status, {"move": next(iter((errors or {}).values()), "")}
        )

    def run() -> ResponseReturnValue:
        stored = ea.move_stage(
            _crm(), slug, request.form.get("version"), pipeline_slug, stage_slug, direction
        )
        order = [s.slug for s in _pipeline_or_404(stored, pipeline_slug).stages]
        return _done(
            slug,
            f"Stage {stage.name!r} moved {direction}.",
            "stage.move",
            {
                "pipeline": pipeline_slug,
                "stage": stage_slug,
                "order": order,
                "version": stored.version,
            },
        )

    return _attempt(run, show)


@bp.post("/entities/<slug>/pipelines/<pipeline_slug>/stages/<stage_slug>/remove")
def stage_remove(slug: str, pipeline_slug: str, stage_slug: str) -> ResponseReturnValue:
    """Remove a stage no entry sits in (refused with the count otherwise)."""
    current = _entity_or_404(slug)
    pipeline = _pipeline_or_404(current, pipeline_slug)
    stage = _stage_or_404(pipeline, stage_slug)

    def show(status: int = 200, errors: Mapping[str, str] | None = None) -> ResponseReturnValue:
        return _show_stage(
            current, pipeline, stage, status, {"remove": next(iter((errors or {}).values()), "")}
        )

    def run() -> ResponseReturnValue:
        stored = ea.remove_stage(
            _crm(), slug, request.form.get("version"), pipeline_slug, stage_slug
        )
        return _done(
            slug,
            f"Stage {stage_slug!r} removed from {pipeline_slug!r}.",
            "stage.remove",
            {"pipeline": pipeline_slug, "stage": stage_slug, "version": stored.version},
        )

    return _attempt(run, show)
