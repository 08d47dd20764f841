"""Attack review of this session's speed work (issue 14, B2/B3/B5): planned listings, the
cached "who wants a store's events" answer, the bound-service reuse.

Each test here failed before its fix: a planned listing answered a call whose options the
service refuses (``limit=None``, ``limit=True`` beside ``limit=1``); a write that began when
nobody listened sent its event before its commit, attributed to ``system``, when a receiver
connected while it waited for the write lock.

Real parts only: SQLite files, a second raw sqlite3 connection holding the write lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmExtension, open_store
from crm_templates.extension import CrmTemplateError

WT = {
    "slug": "wt",
    "fields": [{"key": "weight", "type": "number"}, {"key": "history", "type": "json"}],
}
NOTES = {"slug": "notes", "entityMode": "data", "fields": [{"key": "n", "type": "number"}]}


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[Crm]:
    """A SQLite service with two customers' weight entries."""
    service = Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}"))
    service.ensure_entity(WT)
    service.ensure_entity(NOTES)
    for cid in ("cus_alice", "cus_bob"):
        view = service.bind(cid)
        for day in range(1, 4):
            view.add_field_value(slug="wt", fieldKey="history", value={"d": f"{cid}-{day}"})
    yield service
    service.close()


def _env(crm: Crm) -> SandboxedEnvironment:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm)  # type: ignore[attr-defined]
    return env


def _outcome(env: SandboxedEnvironment, source: str, **context: Any) -> str:
    try:
        return env.from_string(source).render(customer_id="cus_alice", **context)
    except CrmTemplateError as exc:
        return "error: " + str(exc).split(": ", 1)[1]


# --- planned listings answer only what the service accepts ----------------------------------

BAD_LIMITS = [
    # alone: planned (a constant None), the service refuses it
    "{{ GetCrmEntries(slug=S, limit=None) | length }}",
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=None) | length }}",
    # beside a good call that equals it as a dict key: True == 1, 2.0 == 2
    "{{ GetCrmEntries(slug=S, limit=1) | length }}{{ GetCrmEntries(slug=S, limit=True) }}",
    "{{ GetCrmEntries(slug=S, limit=2.0) | length }}{{ GetCrmEntries(slug=S, limit=2) }}",
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=2) | length }}"
    "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=2.0) }}",
]


@pytest.mark.parametrize("source", BAD_LIMITS)
def test_a_cached_listing_never_answers_a_call_the_service_refuses(crm: Crm, source: str) -> None:
    env = _env(crm)
    planned = _outcome(env, source.replace("slug=S", "slug='wt'"))
    lazy = _outcome(env, source.replace("slug=S", "slug=s"), s="wt")
    assert planned.startswith("error: ") and "limit must be a whole number" in planned
    assert planned == lazy


def test_listings_over_the_limit_cap_share_one_read_and_answer_alike(crm: Crm) -> None:
    env = _env(crm)
    source = (
        "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=500) | length }}/"
        "{{ GetCrmFieldValues(slug=S, fieldKey='history', limit=200) | length }}/"
        "{{ GetCrmEntries(slug=S, limit=1) | map(attribute='reference_id') | join }}"
    )
    planned = _outcome(env, source.replace("slug=S", "slug='wt'"))
    assert planned == _outcome(env, source.replace("slug=S", "slug=s"), s="wt")
    assert planned == "3/3/cus_alice"
