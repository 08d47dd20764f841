"""Entity presets: ``EnsureCrmEntity({slug, preset: 'leads' | 'contacts' | 'deals'})``.

Issue 9, item 8. A preset supplies the standard fields and pipeline of a kind of CRM record
(the seed's CRM mode is "suitable for deals, leads, contacts"); the seed names no field list,
so the lists below are this project's choice, documented in docs/reference/entities.md:

* ``leads`` — name, email, phone, company, source, value, notes; pipeline ``leads``: New (10 %),
  Contacted (25 %), Qualified (50 %), Won (100 %, won), Lost (0 %, lost).
* ``contacts`` — name, email, phone, company, job_title, source, notes; pipeline
  ``lifecycle``: New (10 %), Engaged (40 %), Customer (100 %, won), Inactive (0 %, lost).
* ``deals`` — name, value, company, email, phone, source, expected_close_date, notes; pipeline
  ``sales``: Qualified (20 %), Proposal (50 %), Negotiation (75 %), Won (100 %, won),
  Lost (0 %, lost).

Merging (`apply_preset`): explicit options win. Explicit ``fields`` add to the preset's; one
with a preset field's key replaces that definition in place. Explicit ``pipelines`` come after
the preset's (which stays first, so new entries land on it), and one with the preset pipeline's
slug replaces it. ``name``, ``singularName``, ``pluralName`` and ``color`` default to the
preset's. ``entityMode: 'data'`` takes the preset's fields without its pipeline. On an
existing entity, EnsureCrmEntity's usual rule holds: only missing fields and pipelines are
added, nothing is changed.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .errors import CrmValidationError


def _stage(slug: str, name: str, status: str, probability: int, color: str) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": name,
        "semantic_status": status,
        "probability": probability,
        "color": color,
    }


_GREY, _BLUE, _VIOLET, _AMBER, _GREEN, _RED = (
    "#64748b", "#2563eb", "#7c3aed", "#d97706", "#16a34a", "#dc2626",
)  # fmt: skip
_WON = _stage("won", "Won", "won", 100, _GREEN)
_LOST = _stage("lost", "Lost", "lost", 0, _RED)

_NAME = {"key": "name", "label": "Name", "type": "text"}
_EMAIL = {"key": "email", "label": "Email", "type": "email"}
_PHONE = {"key": "phone", "label": "Phone", "type": "phone"}
_COMPANY = {"key": "company", "label": "Company", "type": "text"}
_SOURCE = {
    "key": "source",
    "label": "Source",
    "type": "text",
    "reporting_config": {"aggregation_type": "categorical", "preferred_chart": "pie"},
}
_VALUE = {
    "key": "value",
    "label": "Value",
    "type": "number",
    "reporting_config": {"aggregation_type": "numeric", "preferred_chart": "kpi"},
}
_NOTES = {"key": "notes", "label": "Notes", "type": "textarea"}

PRESETS: dict[str, dict[str, Any]] = {
    "leads": {
        "name": "Leads",
        "singularName": "Lead",
        "pluralName": "Leads",
        "color": _AMBER,
        "fields": [_NAME, _EMAIL, _PHONE, _COMPANY, _SOURCE, {**_VALUE, "label": "Estimated value"},
                   _NOTES],
        "pipelines": [
            {
                "slug": "leads",
                "name": "Lead pipeline",
                "stages": [
                    _stage("new", "New", "open", 10, _GREY),
                    _stage("contacted", "Contacted", "active", 25, _BLUE),
                    _stage("qualified", "Qualified", "active", 50, _VIOLET),
                    _WON,
                    _LOST,
                ],
            }
        ],
    },
    "contacts": {
        "name": "Contacts",
        "singularName": "Contact",
        "pluralName": "Contacts",
        "color": _BLUE,
        "fields": [_NAME, _EMAIL, _PHONE, _COMPANY,
                   {"key": "job_title", "label": "Job title", "type": "text"}, _SOURCE, _NOTES],
        "pipelines": [
            {
                "slug": "lifecycle",
                "name": "Lifecycle",
                "stages": [
                    _stage("new", "New", "open", 10, _GREY),
                    _stage("engaged", "Engaged", "active", 40, _BLUE),
                    _stage("customer", "Customer", "won", 100, _GREEN),
                    _stage("inactive", "Inactive", "lost", 0, _RED),
                ],
            }
        ],
    },
    "deals": {
        "name": "Deals",
        "singularName": "Deal",
        "pluralName": "Deals",
        "color": _GREEN,
        "fields": [
            {**_NAME, "label": "Deal name"}, _VALUE, _COMPANY,
            {**_EMAIL, "label": "Contact email"}, {**_PHONE, "label": "Contact phone"}, _SOURCE,
            {"key": "expected_close_date", "label": "Expected close date", "type": "date",
             "reporting_config": {"aggregation_type": "date", "preferred_chart": "line"}},
            _NOTES,
        ],
        "pipelines": [
            {
                "slug": "sales",
                "name": "Sales pipeline",
                "stages": [
                    _stage("qualified", "Qualified", "open", 20, _GREY),
                    _stage("proposal", "Proposal", "active", 50, _BLUE),
                    _stage("negotiation", "Negotiation", "active", 75, _VIOLET),
                    _WON,
                    _LOST,
                ],
            }
        ],
    },
}  # fmt: skip

#: Entity settings a preset supplies when the options leave them out.
_SETTINGS = ("name", "singularName", "pluralName", "color")


def preset(name: Any) -> dict[str, Any]:
    """A copy of the preset's definition (``name``, ``singularName``, ``pluralName``,
    ``color``, ``fields``, ``pipelines``).

    Raises `CrmValidationError` naming the known presets for anything else.
    """
    found = PRESETS.get(name) if isinstance(name, str) else None
    if found is None:
        raise CrmValidationError(
            f"unknown preset {name!r}; presets: {', '.join(PRESETS)} (or leave preset out and "
            "give fields and pipelines)"
        )
    return copy.deepcopy(found)


def _key(item: Any, key: str) -> str | None:
    value = item.get(key) if isinstance(item, Mapping) else None
    return value if isinstance(value, str) else None


def _merge(base: list[dict[str, Any]], extra: Any, key: str) -> Any:
    """The preset's items with explicit ones replacing those of the same key, then the rest of
    the explicit ones. A malformed ``extra`` is returned as is, for the parser to report."""
    if extra is None:
        return base
    if not isinstance(extra, list | tuple):
        return extra
    taken = {item[key] for item in base}
    chosen: dict[str, Any] = {}
    for item in extra:
        k = _key(item, key)
        if k is not None and k in taken and k not in chosen:
            chosen[k] = item
    used = {id(item) for item in chosen.values()}
    # A second item with the same key stays in the list, so the parser reports the duplicate.
    return [chosen.get(item[key], item) for item in base] + [
        item for item in extra if id(item) not in used
    ]


def apply_preset(options: Mapping[str, Any]) -> dict[str, Any]:
    """EnsureCrmEntity's canonical options with their ``preset`` expanded (see the module
    docstring); options without ``preset`` (or with ``preset: None``) come back unchanged."""
    out = dict(options)
    name = out.pop("preset", None)
    if name is None:
        return out
    definition = preset(name)
    for setting in _SETTINGS:
        if out.get(setting) is None:
            out[setting] = definition[setting]
    out["fields"] = _merge(definition["fields"], out.get("fields"), "key")
    if out.get("entityMode") == "data":
        return out
    out["pipelines"] = _merge(definition["pipelines"], out.get("pipelines"), "slug")
    return out


__all__ = ["PRESETS", "apply_preset", "preset"]
