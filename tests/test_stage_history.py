"""Stage history (issue 12, item 3): every stage change — from templates, the service and the
admin's `move_entry` — is recorded with who made it and when, on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmValidationError, EntryNotFoundError, PreviewError
from crm_templates.errors import StaleEntryError
from crm_templates.extension import CrmExtension
from crm_templates.stage_history import SYSTEM, history, move_entry

DEALS = {
    "slug": "deals",
    "fields": [{"key": "amount", "type": "number"}],
    "pipelines": [
        {"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won"}, {"slug": "lost"}]},
        {"slug": "renewals", "stages": [{"slug": "due"}, {"slug": "renewed"}]},
    ],
}


@pytest.fixture
def deals(crm: Crm) -> Crm:
    """The service with the deals entity (two pipelines)."""
    crm.ensure_entity(DEALS)
    return crm


def stage_ids(crm: Crm) -> dict[str, str]:
    entity = crm.get_entity("deals")
    return {s.slug: s.id for p in entity.pipelines for s in p.stages}


def new_deal(crm: Crm, customer: str = "cus_a") -> str:
    result = crm.create_entry(slug="deals", values={"amount": 1}, referenceId=customer)
    assert result["ok"], result
    return str(result["id"])


def test_a_template_move_is_recorded_for_the_customer(deals: Crm) -> None:
    entry_id = new_deal(deals)
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(deals, on_error="raise")  # type: ignore[attr-defined]
    out = env.from_string("{{ MoveCrmToStage(slug='deals', stageSlug='won') }}done").render(
        customer_id="cus_a"
    )
    assert out == "done"
    ids = stage_ids(deals)
    (change,) = history(deals, entry_id)
    assert (change.from_stage_id, change.to_stage_id) == (ids["new"], ids["won"])
    assert change.actor == "customer cus_a"
    assert change.entry_id == entry_id and change.entity == "deals"
    assert change.at == deals.get_entry(entry_id).updated_at  # type: ignore[union-attr]


def test_every_move_function_records_and_a_non_move_records_nothing(deals: Crm) -> None:
    entry_id = new_deal(deals)
    ann = deals.bind("cus_a")
    ann.move_to_stage(slug="deals", stageSlug="won")
    ann.move_to_stage(slug="deals", stageSlug="won")  # already there: not a change
    ann.move_to_pipeline(slug="deals", pipelineSlug="renewals")
    deals.move_lead(  # trusted code without a customer: "system"
        slug="deals", pipelineSlug="sales", stageSlug="lost", referenceId="cus_a"
    )
    ids = stage_ids(deals)
    changes = history(deals, entry_id)
    assert [(c.from_stage_id, c.to_stage_id, c.actor) for c in changes] == [
        (ids["due"], ids["lost"], SYSTEM),
        (ids["won"], ids["due"], "customer cus_a"),
        (ids["new"], ids["won"], "customer cus_a"),
    ]
    pipelines = {p.slug: p.id for p in deals.get_entity("deals").pipelines}
    assert (changes[1].from_pipeline_id, changes[1].to_pipeline_id) == (
        pipelines["sales"],
        pipelines["renewals"],
    )


def test_all_entries_and_async_moves_record_each_entry(deals: Crm) -> None:
    first, second = new_deal(deals), new_deal(deals)
    other = new_deal(deals, "cus_b")
    ann = deals.bind("cus_a")
    ann.move_to_stage(slug="deals", stageSlug="won", allEntries=True)
    assert len(history(deals, first)) == len(history(deals, second)) == 1
    assert history(deals, other) == []
    assert ann.move_to_stage(slug="deals", stageSlug="lost", **{"async": True})["pending"]
    assert deals.flush(10)
    (newest, _) = history(deals, second)
    assert newest.to_stage_id == stage_ids(deals)["lost"] and newest.actor == "customer cus_a"


def test_move_entry_moves_one_entry_for_the_given_actor(deals: Crm) -> None:
    entry_id, other = new_deal(deals), new_deal(deals)
    moved = move_entry(deals, entry_id, stage="won", actor="operator")
    ids = stage_ids(deals)
    assert moved.stage_id == ids["won"]
    assert deals.get_entry(other).stage_id == ids["new"]  # type: ignore[union-attr]
    moved = move_entry(
        deals, entry_id, stage=ids["renewed"], pipeline="renewals", actor="op_7",
        expected_version=moved.version,
    )  # fmt: skip
    assert [c.actor for c in history(deals, entry_id)] == ["op_7", "operator"]
    assert history(deals, other) == []


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"stage": "nope"}, CrmValidationError, "has no stage 'nope'"),
        ({"stage": "won", "pipeline": "renewals"}, CrmValidationError, "has no stage 'won'"),
        ({"stage": "won", "pipeline": "nope"}, CrmValidationError, "has no pipeline 'nope'"),
        ({"stage": ""}, CrmValidationError, "stage must be"),
        ({"stage": "won", "expected_version": 99}, StaleEntryError, "changed by someone else"),
    ],
)
def test_move_entry_refusals_change_nothing(
    deals: Crm, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    entry_id = new_deal(deals)
    before = deals.get_entry(entry_id)
    with pytest.raises(error, match=message):
        move_entry(deals, entry_id, actor="operator", **options)
    assert deals.get_entry(entry_id) == before
    assert history(deals, entry_id) == []


def test_move_entry_refuses_unknown_entries_data_mode_and_previews(deals: Crm) -> None:
    with pytest.raises(EntryNotFoundError):
        move_entry(deals, "nope", stage="won", actor="operator")
    deals.ensure_entity(slug="profile", entityMode="data", fields=[{"key": "nick"}])
    profile = deals.create_entry(slug="profile", values={"nick": "a"}, referenceId="cus_a")["id"]
    with pytest.raises(CrmValidationError, match="data mode"):
        move_entry(deals, profile, stage="won", actor="operator")
    entry_id = new_deal(deals)
    with pytest.raises(PreviewError):
        move_entry(deals.bind("cus_a", read_only=True), entry_id, stage="won", actor="x")
    assert history(deals, entry_id) == []


def test_update_entry_with_a_stale_version_changes_nothing(deals: Crm) -> None:
    entry_id = new_deal(deals)
    entry = deals.get_entry(entry_id)
    assert entry is not None
    deals.update_entry(entry_id, {"amount": 2}, expected_version=entry.version)
    with pytest.raises(StaleEntryError, match="reload it"):
        deals.update_entry(entry_id, {"amount": 3}, expected_version=entry.version)
    assert deals.get_entry(entry_id).values["amount"] == 2  # type: ignore[union-attr]
