"""Dispatch by seed name (issue 10): each of the 17 names, in both spellings, runs *its*
function — checked by the exact result and by exactly what changed in the store — through
`Crm.call`, through the template globals and through a page backend's ``page.<Name>``.

An earlier test only asserted that every name raised `MissingOptionError` when called without
options, which also held when `Crm.call` sent every name to one method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import FUNCTIONS, Crm, CrmExtension, open_store
from crm_templates.access import REASSIGN_REFUSALS
from tests.crm_world import NOTHING, World, build_world, diff, plain, snapshot

OTHER = "cus_other"  # another customer; never touched unless a case says so


@dataclass(frozen=True)
class Ids:
    """The ids one case refers to: the world's and the entries `seed` made for customer ``me``."""

    me: str
    world: World
    d_old: str  # deals: note 'old', amount 1, partners [c1] (older)
    d_new: str  # deals: amount 2 (newest, no note)
    lead: str  # leads: note 'Ann', amount 5
    d_other: str  # deals of OTHER: note 'theirs'

    def stage(self, path: str) -> str:
        return self.world.stages[path]

    def pipeline(self, path: str) -> str:
        return self.world.pipelines[path]


def seed(crm: Crm, me: str, world: World | None = None) -> Ids:
    """The world (built unless given) plus a few entries for ``me`` and one for another
    customer."""
    world = world or build_world(crm)
    c1, _ = world.companies
    d_old = crm.create_entry(
        slug="deals", values={"note": "old", "amount": 1, "partners": [c1]}, referenceId=me
    )["id"]
    d_new = crm.create_entry(slug="deals", values={"amount": 2}, referenceId=me)["id"]
    lead = crm.create_entry(
        slug="leads", title="Ann's lead", values={"note": "Ann", "amount": 5}, referenceId=me
    )["id"]
    d_other = crm.create_entry(slug="deals", values={"note": "theirs"}, referenceId=OTHER)["id"]
    return Ids(me, world, d_old, d_new, lead, d_other)


def deal_row(ids: Ids, values: dict[str, Any], *, title: str = "", stage: str = "sales/proposal",
             reference: tuple[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The row of a new deals entry."""
    return {
        "entity": "deals",
        "reference": reference or ("customer", ids.me),
        "title": title,
        "values": values,
        "pipeline_id": ids.pipeline("deals/" + stage.split("/")[0]),
        "stage_id": ids.stage("deals/" + stage),
    }


@dataclass(frozen=True)
class Case:
    """One function's call, its exact result and exactly what it changes.

    ``result`` and ``change`` get the ids and the actual result (for ids only the call knows,
    such as a new entry's). ``view_result``/``view_change``, when given, are what a view
    (templates, page backends) gets instead: only ReassignCrmReference differs (a view may
    move only the session's own visitor).
    """

    options: Callable[[Ids], dict[str, Any]]
    result: Callable[[Ids, Any], Any]
    change: Callable[[Ids, Any], dict[str, Any]]
    view_result: Callable[[Ids, Any], Any] | None = None
    view_change: Callable[[Ids, Any], dict[str, Any]] | None = None


def unchanged(ids: Ids, result: Any) -> dict[str, Any]:
    return NOTHING


def changed(**entries: Any) -> Callable[[Ids, Any], dict[str, Any]]:
    """An expected change of existing entries: ``changed(d_old={'values': ...})``."""

    def expected(ids: Ids, result: Any) -> dict[str, Any]:
        return {**NOTHING, "changed": {getattr(ids, k): v(ids) for k, v in entries.items()}}

    return expected


def move_result(ids: Ids, stage: str, moved: int = 1, total: int = 2) -> dict[str, Any]:
    return {
        "ok": True,
        "moved": moved,
        "totalMatched": total,
        "pipeline_id": ids.pipeline(stage.rsplit("/", 1)[0]),
        "stage_id": ids.stage(stage),
    }


def placed(stage: str) -> Callable[[Ids], dict[str, Any]]:
    return lambda ids: {
        "pipeline_id": ids.pipeline(stage.rsplit("/", 1)[0]),
        "stage_id": ids.stage(stage),
    }


CASES: dict[str, Case] = {
    "EnsureCrmEntity": Case(
        lambda ids: {"slug": "fresh", "fields": [{"key": "k"}]},
        lambda ids, r: {"ok": True, "id": r["id"], "slug": "fresh", "created": True,
                        "fields_added": ["k"], "fields_skipped": [],
                        "pipelines_added": ["default"]},
        lambda ids, r: {**NOTHING, "entities": ["fresh"]},
    ),
    "CreateCrmEntry": Case(
        lambda ids: {"slug": "deals", "title": "T", "values": {"amount": 9},
                     "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": r["id"], "created": True},
        lambda ids, r: {**NOTHING, "created": [deal_row(ids, {"amount": 9.0}, title="T")]},
    ),
    "GetCrmEntries": Case(
        lambda ids: {"slug": "deals", "referenceId": ids.me},
        lambda ids, r: [("entry", ids.d_new), ("entry", ids.d_old)],
        unchanged,
    ),
    "GetCrmField": Case(
        lambda ids: {"slug": "deals", "fieldKey": "note", "referenceId": ids.me},
        lambda ids, r: "old",
        unchanged,
    ),
    "GetCrmFields": Case(
        lambda ids: {"slug": "deals", "fieldKeys": ["note", "amount"], "referenceId": ids.me},
        lambda ids, r: {"note": "old", "amount": 2.0},
        unchanged,
    ),
    "SetCrmField": Case(
        # The older entry holds the key: it is the one updated (no new entry).
        lambda ids: {"slug": "deals", "fieldKey": "note", "value": "new", "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": ids.d_old, "created": False},
        changed(d_old=lambda ids: {"values": {"note": "new", "amount": 1.0,
                                              "partners": [ids.world.companies[0]]}}),
    ),
    "SetCrmFields": Case(
        # The newest entry holding one of the keys (amount) takes both.
        lambda ids: {"slug": "deals", "fields": {"extra": "x", "amount": 3},
                     "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": ids.d_new, "created": False},
        changed(d_new=lambda ids: {"values": {"amount": 3.0, "extra": "x"}}),
    ),
    "AddCrmFieldValue": Case(
        lambda ids: {"slug": "deals", "fieldKey": "amount", "value": 7, "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": r["id"], "created": True},
        lambda ids, r: {**NOTHING, "created": [deal_row(ids, {"amount": 7.0})]},
    ),
    "GetCrmFieldValues": Case(
        lambda ids: {"slug": "deals", "fieldKey": "amount", "referenceId": ids.me},
        lambda ids, r: [2.0, 1.0],
        unchanged,
    ),
    "ClearCrmEntries": Case(
        lambda ids: {"slug": "deals", "referenceId": ids.me},
        lambda ids, r: {"ok": True, "deleted": 2},
        lambda ids, r: {**NOTHING, "deleted": sorted([ids.d_old, ids.d_new])},
    ),
    "SetCrmRelation": Case(
        # Acts on the entry holding the relation key (the older one), appending once.
        lambda ids: {"slug": "deals", "relationKey": "partners",
                     "targetEntryId": ids.world.companies[1], "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": ids.d_old, "changed": True},
        changed(d_old=lambda ids: {"values": {"note": "old", "amount": 1.0,
                                              "partners": list(ids.world.companies)}}),
    ),
    "RemoveCrmRelation": Case(
        lambda ids: {"slug": "deals", "relationKey": "partners",
                     "targetEntryId": ids.world.companies[0], "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": ids.d_old, "changed": True},
        changed(d_old=lambda ids: {"values": {"note": "old", "amount": 1.0, "partners": []}}),
    ),
    "MoveCrmLead": Case(
        lambda ids: {"slug": "deals", "pipelineSlug": "renewals", "stageSlug": "won",
                     "referenceId": ids.me},
        lambda ids, r: move_result(ids, "deals/renewals/won"),
        changed(d_new=placed("deals/renewals/won")),
    ),
    "MoveCrmToStage": Case(
        lambda ids: {"slug": "deals", "stageSlug": "renewal", "referenceId": ids.me},
        lambda ids, r: move_result(ids, "deals/renewals/renewal"),
        changed(d_new=placed("deals/renewals/renewal")),
    ),
    "MoveCrmToPipeline": Case(
        # Lands on the pipeline's first stage.
        lambda ids: {"slug": "deals", "pipelineSlug": "renewals", "referenceId": ids.me},
        lambda ids, r: move_result(ids, "deals/renewals/renewal"),
        changed(d_new=placed("deals/renewals/renewal")),
    ),
    "MoveCrmToEntity": Case(
        lambda ids: {"fromSlug": "leads", "toSlug": "deals",
                     "fieldMap": {"note": "extra", "amount": "amount"}, "referenceId": ids.me},
        lambda ids, r: {"ok": True, "id": r["id"], "ids": [r["id"]], "moved": 2,
                        "removed_from_old": False},
        lambda ids, r: {**NOTHING, "created": [
            deal_row(ids, {"extra": "Ann", "amount": 5.0}, title="Ann's lead")]},
    ),
    "ReassignCrmReference": Case(
        # The trusted service moves another customer's deal onto a customer with none.
        lambda ids: {"slug": "deals", "fromReferenceType": "customer",
                     "fromReferenceId": OTHER, "toReferenceId": "cus_new"},
        lambda ids, r: {"ok": True, "migrated": 1, "merged": False},
        changed(d_other=lambda ids: {"reference": ("customer", "cus_new")}),
        # A view may only move the session's own anonymous visitor: refused, nothing moved.
        lambda ids, r: {"ok": False, "error": "forbidden", "migrated": 0,
                        "message": REASSIGN_REFUSALS["forbidden"]},
        unchanged,
    ),
}  # fmt: skip

NAMES = [
    (spec.name, spelling)
    for spec in FUNCTIONS.values()
    for spelling in (spec.name, spec.camel_name)
]
NAME_IDS = [spelling for _, spelling in NAMES]


def test_every_function_has_a_dispatch_case() -> None:
    assert sorted(CASES) == sorted(FUNCTIONS)
    assert len(NAMES) == 34 and len(set(NAME_IDS)) == 34


def check(case: Case, ids: Ids, crm: Crm, run: Callable[[], Any], *, view: bool) -> None:
    """Run the call and compare its result and the store's change with the case."""
    before = snapshot(crm)
    result = plain(run())
    after = snapshot(crm)
    expected_result = (case.view_result if view and case.view_result else case.result)(ids, result)
    expected_change = (case.view_change if view and case.view_change else case.change)(ids, result)
    assert result == expected_result
    assert diff(before, after) == expected_change


@pytest.mark.parametrize(("name", "spelling"), NAMES, ids=NAME_IDS)
def test_crm_call_runs_the_named_function(crm: Crm, name: str, spelling: str) -> None:
    ids = seed(crm, "cus_1")
    case = CASES[name]
    check(case, ids, crm, lambda: crm.call(spelling, case.options(ids)), view=False)


@pytest.fixture
def sqlite_crm_memory() -> Iterator[Crm]:
    """A trusted Crm over an in-memory SQLite store (dispatch does not depend on the backend)."""
    crm = Crm(open_store("sqlite:///:memory:"))
    yield crm
    crm.close()


@pytest.mark.parametrize(("name", "spelling"), NAMES, ids=NAME_IDS)
def test_template_global_runs_the_named_function(
    sqlite_crm_memory: Crm, name: str, spelling: str
) -> None:
    crm = sqlite_crm_memory
    ids = seed(crm, "cus_1")
    case = CASES[name]
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm)  # type: ignore[attr-defined]
    template = env.from_string("{% do out.append(" + spelling + "(options)) %}")

    def run() -> Any:
        out: list[Any] = []
        template.render(out=out, options=case.options(ids), customer_id="cus_1")
        assert len(out) == 1
        return out[0]

    check(case, ids, crm, run, view=True)


BACKEND = """\
from crm_templates.model import Entry


def plain(value):
    if isinstance(value, Entry):
        return {"__entry__": value.id}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def handle(request, page):
    if request.method != "POST":
        # The visitor's first write creates the session's anonymous customer.
        page.AddCrmFieldValue({"slug": "archive", "fieldKey": "note", "value": "visitor"})
        return page.json({"customer_id": page.customer_id})
    body = page.data
    return page.json({"result": plain(getattr(page, body["name"])(body["options"]))})
"""


@pytest.fixture
def call_app(tmp_path: Path) -> Iterator[Any]:
    """A site whose page backend ``/call`` calls ``page.<name>(options)`` from a JSON body."""
    from crm_templates.server import create_app

    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "call.py").write_text(BACKEND)
    app = create_app(site, "sqlite:///:memory:", TESTING=True, CRM_SEED=False)
    yield app
    app.extensions["crm"].close()


@pytest.mark.parametrize(("name", "spelling"), NAMES, ids=NAME_IDS)
def test_page_backend_attribute_runs_the_named_function(
    call_app: Any, name: str, spelling: str
) -> None:
    crm = call_app.extensions["crm"].crm
    world = build_world(crm)
    client = call_app.test_client()
    me = client.get("/call").get_json()["customer_id"]
    assert me
    ids = seed(crm, me, world)
    case = CASES[name]

    def run() -> Any:
        response = client.post(
            "/call",
            json={"name": spelling, "options": case.options(ids)},
            headers={"Origin": "http://localhost"},
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["result"]

    check(case, ids, crm, run, view=True)
