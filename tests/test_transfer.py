"""Export and import of entries (issue 11, item 5): exact round trips of every field type and
hostile values on both backends, dry runs naming every bad line, all-or-nothing imports,
resuming by a key column, two customers kept apart, and the commands in a real process."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_templates import Crm, open_store
from crm_templates.cli import main
from crm_templates.model import Entry
from crm_templates.storage import Store
from crm_templates.transfer import (
    ABSENT,
    FORMATS,
    decode_csv_value,
    encode_csv_value,
    escape_cell,
    export_entries,
    import_entries,
    unescape_cell,
)

ROOT = Path(__file__).resolve().parent.parent

HOSTILE = [
    "line one\nline two",
    "crlf\r\ninside",
    '"quoted", with, commas',
    "=cmd|' /C calc'!A0",
    '=HYPERLINK("http://x")',
    "+1",
    "-1",
    "@SUM(A1)",
    "\tleading tab",
    "\rleading cr",
    "'apostrophe",
    "''",
    "\\N",
    "",
    "null",
    "[1, 2]",
    "true",
    " leading space",
    "ünïcødé 🎉 עברית 中文",
    "a\u2028b\u2029c\x85d",
    "nul\x00char",
]

COMPANY = {
    "slug": "company",
    "entityMode": "data",
    "fields": [{"key": "name"}],
}
DEAL = {
    "slug": "deal",
    "fields": [
        {"key": "text", "type": "text"},
        {"key": "textarea", "type": "textarea"},
        {"key": "rich", "type": "rich_text"},
        {"key": "wysiwyg", "type": "wysiwyg"},
        {"key": "email", "type": "email"},
        {"key": "phone", "type": "phone"},
        {"key": "url", "type": "url"},
        {"key": "amount", "type": "number"},
        {"key": "day", "type": "date"},
        {"key": "at", "type": "datetime"},
        {"key": "won", "type": "boolean"},
        {"key": "size", "type": "select", "options": ["small", "b,c", "=x", "'q"]},
        {"key": "tags", "type": "multiselect", "options": ["a", "b,c", "=x", '"q"']},
        {"key": "colour", "type": "color"},
        {"key": "logo", "type": "image"},
        {"key": "doc", "type": "file"},
        {"key": "meta", "type": "json"},
        {"key": "company", "type": "reference", "target_entity": "company"},
        {"key": "partners", "type": "multi_reference", "target_entity": "company"},
        {"key": "title", "type": "text"},  # the same name as an entry column
        {"key": "external_id", "type": "text"},
    ],
    "pipelines": [
        {"slug": "sales", "stages": [{"slug": "new"}, {"slug": "won", "semantic_status": "won"}]},
        {"slug": "support", "stages": [{"slug": "new"}, {"slug": "done"}]},
    ],
}
JSON_VALUES: list[Any] = [
    {"k": ["v", 1, None, True], "=": "=cmd", "nested": {"a": "b\nc"}},
    "a plain string",
    "=cmd",
    -3,
    0.5,
    [],
    {},
    True,
    None,
]


def populate(crm: Crm) -> dict[str, str]:
    """Two customers' entries holding every field type and the hostile values; returns the
    customers' ids."""
    crm.ensure_entity(COMPANY)
    crm.ensure_entity(DEAL)
    companies = [
        crm.create_entry(slug="company", referenceType="site", referenceId="catalog", title=t,
                         values={"name": t})["id"]
        for t in ("Acme, Inc.", "=Evil", "Ünï")
    ]  # fmt: skip
    ada, bob = "cus_ada", "cus_bob"
    full = {
        "text": "plain",
        "textarea": 'multi\nline\r\n"quoted", text',
        "rich": "<p>Hi <b>there</b>, =friend</p>",
        "wysiwyg": '<p><a href="https://example.com">link</a></p>',
        "email": "dana@example.com",
        "phone": "+1 415 555 0100 x 12",
        "url": "https://example.com/a?b=c,d&e='f'",
        "amount": 82.5,
        "day": "2026-03-15",
        "at": "2026-03-15T09:30:00.123456Z",
        "won": False,
        "size": "b,c",
        "tags": ["a", "=x", '"q"'],
        "colour": "#aabbcc",
        "logo": "https://example.com/i.png",
        "doc": "/uploads/f.pdf",
        "meta": JSON_VALUES[0],
        "company": companies[0],
        "partners": companies[1:],
        "title": "a field called title",
        "external_id": "ext-0",
    }
    crm.create_entry(slug="deal", title="=full", referenceId=ada, values=full)
    for n, text in enumerate(HOSTILE):
        crm.create_entry(
            slug="deal",
            title=text,
            referenceId=ada if n % 2 else bob,
            values={"text": text, "textarea": text, "title": text, "external_id": f"ext-{n + 1}"},
            pipeline="support" if n % 3 == 0 else "sales",
        )
    for n, value in enumerate(JSON_VALUES):
        crm.create_entry(
            slug="deal",
            referenceId=bob,
            values={"meta": json.dumps(value), "amount": [-5, 0, 1e300, 0.1, 123456789.25][n % 5],
                    "won": bool(n % 2), "size": ["=x", "'q", "small"][n % 3]},
        )  # fmt: skip
    # Nulls, empty strings and empty lists are values, not absences.
    crm.create_entry(
        slug="deal",
        referenceId=bob,
        values={"text": None, "textarea": "", "tags": [], "partners": [], "won": None,
                "meta": "null"},
    )  # fmt: skip
    crm.bind(ada).move_to_stage(slug="deal", stageSlug="won", pipelineSlug="sales")
    crm.bind(bob).move_to_stage(slug="deal", stageSlug="done")
    return {"ada": ada, "bob": bob}


def entries(store: Store, slug: str) -> list[Entry]:
    """Every entry of ``slug``, by id, with the version (a concurrency counter) set aside."""
    return sorted((replace(e, version=1) for e in store.iter_entries(slug)), key=lambda e: e.id)


def export_text(crm: Crm, slug: str, fmt: str) -> str:
    out = io.StringIO(newline="")
    export_entries(crm, slug, out, fmt)
    return out.getvalue()


def import_text(crm: Crm, slug: str, text: str, fmt: str, **options: Any) -> Any:
    return import_entries(crm, slug, io.StringIO(text, newline=""), fmt, **options)


@pytest.fixture(params=["sqlite", "opensearch"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Opens fresh stores of one backend (a SQLite file each, or fresh search indices)."""
    opened: list[Store] = []

    def make() -> Store:
        if request.param == "sqlite":
            store = open_store(f"sqlite:///{tmp_path / f'db{len(opened)}.db'}")
        else:
            store = request.getfixturevalue("search_store_factory")()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_is_exact_on_each_backend(make_store: Callable[[], Store], fmt: str) -> None:
    source = Crm(make_store())
    customers = populate(source)
    target = Crm(make_store())
    for slug in ("company", "deal"):  # the same entity definitions, as migrate copies them
        target.store.create_entity(source.store.get_entity(slug))  # type: ignore[arg-type]
    files = {}
    for slug in ("company", "deal"):  # referenced entries first
        files[slug] = export_text(source, slug, fmt)
        report = import_text(target, slug, files[slug], fmt)
        assert report.ok and report.written, [str(p) for p in report.problems]
        assert report.created == source.store.count_entries(entity=slug)
    for slug in ("company", "deal"):
        assert entries(target.store, slug) == entries(source.store, slug)
        assert export_text(target, slug, fmt) == files[slug]  # byte for byte
    # Two customers stay apart: each sees exactly their own entries, stages included.
    for cid in customers.values():
        mine = [e for e in entries(source.store, "deal") if e.reference_id == cid]
        got = target.get_entries(slug="deal", referenceId=cid, limit=200)
        assert sorted((replace(e, version=1) for e in got), key=lambda e: e.id) == mine
        assert {e.reference_id for e in got} == {cid}
    stages = {e.stage_id for e in entries(target.store, "deal")}
    assert len(stages) >= 3  # new, won (sales) and done (support) all kept
    source.close()
    target.close()


def test_csv_from_sqlite_imports_into_the_search_backend_and_back(
    search_store_factory: Callable[..., Store], tmp_path: Path
) -> None:
    sqlite = Crm(open_store(f"sqlite:///{tmp_path / 'a.db'}"))
    populate(sqlite)
    search = Crm(search_store_factory())
    for slug in ("company", "deal"):
        search.store.create_entity(sqlite.store.get_entity(slug))  # type: ignore[arg-type]
        assert import_text(search, slug, export_text(sqlite, slug, "csv"), "csv").written
    for slug in ("company", "deal"):
        assert entries(search.store, slug) == entries(sqlite.store, slug)
        assert export_text(search, slug, "jsonl") == export_text(sqlite, slug, "jsonl")
    sqlite.close()


def test_import_into_a_separately_ensured_entity_keeps_stages_by_slug(tmp_path: Path) -> None:
    source = Crm(open_store(f"sqlite:///{tmp_path / 'a.db'}"))
    populate(source)
    target = Crm(open_store(f"sqlite:///{tmp_path / 'b.db'}"))
    target.ensure_entity(COMPANY)
    target.ensure_entity(DEAL)  # new pipeline and stage ids
    for slug in ("company", "deal"):
        assert import_text(target, slug, export_text(source, slug, "csv"), "csv").written

    def placed(crm: Crm) -> dict[str, tuple[str, str]]:
        entity = crm.get_entity("deal")
        names = {(p.id, s.id): (p.slug, s.slug) for p in entity.pipelines for s in p.stages}
        return {e.id: names[(e.pipeline_id, e.stage_id)] for e in crm.store.iter_entries("deal")}

    assert placed(target) == placed(source)
    assert ("support", "done") in placed(target).values()
    source.close()
    target.close()


def formula_like(cell: str) -> bool:
    """Whether a spreadsheet might read ``cell`` as a formula: its first character past
    whitespace is = + - @ in any compatibility form (full-width ＝, small ﹦), or it starts with
    a tab or a line break."""
    import unicodedata

    first = cell.lstrip()[:1]
    return cell.startswith(("\t", "\r", "\n")) or (
        bool(first) and unicodedata.normalize("NFKC", first)[:1] in "=+-@"
    )


# attack11: full-width and small forms, and formula starts after leading whitespace.
SPREADSHEET_FORMULAS = [
    "＝1+1", "＋1", "－1", "＠SUM(A1)", "﹦1", "﹢1", "﹣1", "﹫x", " =1+1", "  +1", "\u3000＝1",
    "\u00a0=1", "\n=1+1", " \t@x", "=HYPERLINK(\"http://x\")",
]  # fmt: skip


@pytest.mark.parametrize("text", HOSTILE + SPREADSHEET_FORMULAS)
def test_every_hostile_text_survives_a_csv_cell(text: str) -> None:
    from crm_templates.model import Field

    f = Field(key="t", label="t", type="text")
    cell = encode_csv_value(f, text)
    assert not formula_like(cell), cell  # no formula in a spreadsheet
    assert decode_csv_value(f, cell) == text
    assert unescape_cell(escape_cell(text)) == text


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(_TEXT, min_size=1, max_size=4))
def test_any_text_round_trips_through_a_csv_file(texts: list[str]) -> None:
    """Through the csv module, not only the cell codec: quotes, line breaks, NUL, any Unicode."""
    from crm_templates.model import Field

    fields = [Field(key=f"t{n}", label="t", type="text") for n in range(len(texts))]
    out = io.StringIO(newline="")
    csv.writer(out).writerow([encode_csv_value(f, t) for f, t in zip(fields, texts, strict=True)])
    (cells,) = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert [decode_csv_value(f, c) for f, c in zip(fields, cells, strict=True)] == texts
    assert not any(formula_like(c) for c in cells)


def test_csv_cells_for_absent_null_and_empty_differ() -> None:
    from crm_templates.model import Field

    f = Field(key="t", label="t", type="text")
    cells = [encode_csv_value(f, v) for v in (ABSENT, None, "", "\\N")]
    assert cells == ["", "\\N", "'", "'\\N"]
    assert [decode_csv_value(f, c) for c in cells] == [ABSENT, None, "", "\\N"]


def test_export_writes_formula_text_escaped(tmp_path: Path) -> None:
    crm = Crm(open_store("sqlite:///:memory:"))
    crm.ensure_entity(slug="note", entityMode="data", fields=[{"key": "body"}])
    crm.create_entry(slug="note", title="@x", referenceId="r", values={"body": "=1+1"})
    crm.create_entry(slug="note", title="＠x", referenceId=" =r", values={"body": "＝1+1"})
    lines = export_text(crm, "note", "csv").splitlines()
    assert lines[0] == "id,title,reference_type,reference_id,created_at,updated_at,body"
    assert lines[1].endswith(",'=1+1") and ",'@x," in lines[1]
    assert lines[2].endswith(",'＝1+1") and ",'＠x," in lines[2] and ",' =r," in lines[2]
    crm.close()


# --- dry runs and all-or-nothing ------------------------------------------------------------

BAD_CSV = (
    "title,reference_id,amount,email,colour,day,size,company,stage\n"  # line 1
    "ok one,cus_1,1,a@example.com,#fff,2026-01-01,small,,won\n"  # line 2
    '"two\nlines",cus_1,2,,,,,,\n'  # lines 3-4: a good row over two lines
    "bad amount,cus_1,lots,,,,,,\n"  # line 5
    "two bad,cus_2,3,not-an-email,#12345,,,,\n"  # line 6
    "ok three,cus_2,4,,,2026-02-30,,,\n"  # line 7: no 30 February
    "bad ref,cus_2,,,,,huge,nope,\n"  # line 8
    "no reference,,5,,,,,,\n"  # line 9
    "bad stage,cus_3,,,,,,,gone\n"  # line 10
    "short,cus_3\n"  # line 11
    "ok last,cus_3,6,,,,,,\n"  # line 12
)


def expected_problems() -> list[tuple[int, str]]:
    return [
        (5, "amount"),
        (6, "email"),
        (6, "colour"),
        (7, "day"),
        (8, "size"),
        (8, "company"),
        (9, "reference_id"),
        (10, "stage"),
        (11, ""),
    ]


@pytest.fixture
def deal_crm(make_store: Callable[[], Store]) -> Iterator[Crm]:
    """A Crm with the company and deal entities and no entries (both backends)."""
    crm = Crm(make_store())
    crm.ensure_entity(COMPANY)
    crm.ensure_entity(DEAL)
    yield crm
    crm.flush()


def test_dry_run_reports_every_bad_line_and_writes_nothing(deal_crm: Crm) -> None:
    report = import_text(deal_crm, "deal", BAD_CSV, "csv", dry_run=True)
    got = [(p.line, p.column or "") for p in report.problems]
    assert got == expected_problems()
    messages = {(p.line, p.column): p.message for p in report.problems}
    assert "field 'amount' (number) expects" in messages[(5, "amount")]
    assert "'nope', which is not an entry of 'company'" in messages[(8, "company")]
    assert "has no stage 'gone'" in messages[(10, "stage")]
    assert report.bad_lines == [5, 6, 7, 8, 9, 10, 11]
    assert report.rows == 10 and not report.written
    assert deal_crm.store.count_entries() == 0


def test_a_bad_row_in_the_middle_means_nothing_is_written(deal_crm: Crm) -> None:
    report = import_text(deal_crm, "deal", BAD_CSV, "csv")
    assert not report.ok and not report.written
    assert deal_crm.store.count_entries() == 0
    good = "\n".join(
        line for n, line in enumerate(BAD_CSV.splitlines(), 1) if n in (1, 2, 3, 4, 12)
    )
    done = import_text(deal_crm, "deal", good + "\n", "csv")
    assert done.written and done.created == 3
    assert deal_crm.store.count_entries(entity="deal") == 3
    two = deal_crm.get_entries(slug="deal", referenceId="cus_1")
    assert {e.title for e in two} == {"ok one", "two\nlines"}


def test_jsonl_dry_run_names_lines_and_columns(deal_crm: Crm) -> None:
    text = "\n".join(
        [
            json.dumps({"reference_id": "c", "amount": 1, "meta": {"a": [1]}}),
            "",
            "not json",
            json.dumps({"reference_id": "c", "amount": "x", "tags": ["zzz"], "bogus": 1}),
            json.dumps(["a list"]),
            json.dumps({"reference_id": "c", "created_at": "yesterday"}),
        ]
    )
    report = import_text(deal_crm, "deal", text, "jsonl", dry_run=True)
    assert [(p.line, p.column) for p in report.problems] == [
        (3, None),
        (4, "bogus"),
        (4, "amount"),
        (4, "tags"),
        (5, None),
        (6, "created_at"),
    ]
    assert "declares no field 'bogus'" in report.problems[1].message
    assert deal_crm.store.count_entries() == 0


def test_an_existing_id_is_refused_without_a_key(deal_crm: Crm) -> None:
    first = import_text(deal_crm, "deal", "id,reference_id\nd-1,c\n", "csv")
    assert first.written
    again = import_text(deal_crm, "deal", "id,reference_id\nd-2,c\nd-1,c\nd-2,c\n", "csv")
    assert [(p.line, p.column) for p in again.problems] == [(3, "id"), (4, "id")]
    assert "already exists; import with --key id" in again.problems[0].message
    assert "the same id as line 2" in again.problems[1].message
    assert deal_crm.store.count_entries() == 1


def test_a_store_failure_mid_import_leaves_nothing_behind(
    search_store_factory: Callable[..., Store],
) -> None:
    """The search backend has no transactions: entries written by earlier bulk requests are
    deleted again when a later one fails (here: an id the search engine refuses as too long
    in bytes, which the core accepts as 512 characters)."""
    crm = Crm(search_store_factory())
    crm.ensure_entity(COMPANY)
    rows = [f"ok-{n},c" for n in range(700)] + ["é" * 400 + ",c"]
    report = None
    with pytest.raises(Exception) as failed:
        report = import_text(crm, "company", "id,reference_id\n" + "\n".join(rows), "csv")
    assert report is None and "bulk write" in str(failed.value)
    assert "the 500 entries written before the failure were deleted again" in str(failed.value)
    assert crm.store.count_entries() == 0


# --- resume by key --------------------------------------------------------------------------


def keyed_csv(rows: list[tuple[str, str, str]]) -> str:
    return "external_id,reference_id,amount,title\n" + "".join(
        f"{k},{r},{a},{t}\n" for k, r, a, t in [(*row, f"deal {row[0]}") for row in rows]
    )


def test_import_by_key_resumes_and_updates(deal_crm: Crm) -> None:
    rows = [(f"x{n}", "cus_a" if n % 2 else "cus_b", str(n)) for n in range(12)]
    half = import_text(deal_crm, "deal", keyed_csv(rows[:5]), "csv", key="external_id")
    assert (half.created, half.updated, half.unchanged) == (5, 0, 0)
    before = {e.values["external_id"]: e for e in deal_crm.store.iter_entries("deal")}
    rows[2] = ("x2", "cus_b", "99")  # changed since the first run
    rest = import_text(deal_crm, "deal", keyed_csv(rows), "csv", key="external_id")
    assert rest.ok, [str(p) for p in rest.problems]
    assert (rest.created, rest.updated, rest.unchanged) == (7, 1, 4)
    after = {e.values["external_id"]: e for e in deal_crm.store.iter_entries("deal")}
    assert len(after) == 12 and deal_crm.store.count_entries() == 12
    assert after["x2"].values["amount"] == 99.0 and after["x2"].id == before["x2"].id
    assert after["x2"].updated_at > before["x2"].updated_at
    assert after["x1"] == before["x1"]  # unchanged rows are not written
    again = import_text(deal_crm, "deal", keyed_csv(rows), "csv", key="external_id")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 12)


def test_key_problems_are_reported(deal_crm: Crm) -> None:
    text = keyed_csv([("k1", "c", "1"), ("k1", "c", "2")]) + ",c,3,no key\n"
    report = import_text(deal_crm, "deal", text, "csv", key="external_id", dry_run=True)
    assert [(p.line, p.column) for p in report.problems] == [(3, "external_id"), (4, "external_id")]
    missing = import_text(deal_crm, "deal", "reference_id\nc\n", "csv", key="external_id")
    assert "the key column 'external_id' is not in the file" in str(missing.problems[0])
    unknown = import_text(deal_crm, "deal", "reference_id\nc\n", "csv", key="nope")
    assert "--key must be 'id' or a declared field" in str(unknown.problems[0])
    assert deal_crm.store.count_entries() == 0


def test_a_match_by_field_never_moves_another_customers_entry(deal_crm: Crm) -> None:
    """attack11: --key FIELD matched cus_a's entry and moved it onto the row's cus_b ("1
    updated"), so a shared value (a name, an email) handed one customer's record to another."""
    import_text(deal_crm, "deal", keyed_csv([("x1", "cus_a", "1")]), "csv", key="external_id")
    (entry,) = deal_crm.store.iter_entries("deal")
    for text in (
        keyed_csv([("x1", "cus_b", "2")]),
        "external_id,reference_type,amount\nx1,site,2\n",
    ):
        report = import_text(deal_crm, "deal", text, "csv", key="external_id")
        assert not report.ok and not report.written
        (problem,) = report.problems
        assert problem.line == 2 and problem.column in ("reference_id", "reference_type")
        assert f"matches entry {entry.id!r} of customer:cus_a by key" in problem.message
        assert "use --key id to move it" in problem.message
        assert deal_crm.store.get_entry(entry.id) == entry
    # The same reference (given or left out) updates; --key id names the entry and may move it.
    same = import_text(
        deal_crm, "deal", keyed_csv([("x1", "cus_a", "3")]), "csv", key="external_id"
    )
    assert (same.updated, same.created) == (1, 0)
    omitted = import_text(deal_crm, "deal", "external_id,amount\nx1,4\n", "csv", key="external_id")
    assert omitted.updated == 1
    moved = import_text(deal_crm, "deal", f"id,reference_id\n{entry.id},cus_b\n", "csv", key="id")
    assert moved.updated == 1
    assert deal_crm.store.get_entry(entry.id).reference_id == "cus_b"  # type: ignore[union-attr]


def test_jsonl_duplicate_keys_and_deep_nesting_are_bad_lines(deal_crm: Crm) -> None:
    """attack11: a JSONL object naming a key twice kept the last value silently (a CSV file
    repeating a column is refused); a deeply nested line raised RecursionError."""
    text = (
        '{"reference_id": "c", "amount": 1, "amount": 2}\n'
        + '{"reference_id": "c", "amount": ' + "[" * 100_000 + "]" * 100_000 + "}\n"
        + '{"reference_id": "c", "amount": 3}\n'
    )  # fmt: skip
    report = import_text(deal_crm, "deal", text, "jsonl")
    assert [(p.line, p.column) for p in report.problems] == [(1, "amount"), (2, None)]
    assert "the key 'amount' appears twice" in report.problems[0].message
    assert "nested too deeply" in report.problems[1].message
    assert not report.written and deal_crm.store.count_entries() == 0


def test_key_id_restores_an_exported_state(deal_crm: Crm) -> None:
    deal_crm.create_entry(slug="deal", referenceId="c", values={"amount": 1, "text": "keep"})
    saved = export_text(deal_crm, "deal", "csv")
    entry = next(deal_crm.store.iter_entries("deal"))
    deal_crm.update_entry(entry.id, {"amount": 2, "colour": "#000"}, title="changed")
    report = import_text(deal_crm, "deal", saved, "csv", key="id")
    assert (report.created, report.updated) == (0, 1)
    restored = deal_crm.store.get_entry(entry.id)
    assert restored is not None
    assert replace(restored, version=1) == replace(entry, version=1)  # colour removed again


# --- the commands ---------------------------------------------------------------------------


def test_cli_dry_run_and_import_exit_codes(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    crm = Crm(open_store(db))
    crm.ensure_entity(COMPANY)
    crm.ensure_entity(DEAL)
    crm.close()
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV, encoding="utf-8")
    runner = CliRunner()
    dry = runner.invoke(main, ["import", "deal", str(bad), "--dry-run", "--store", db])
    assert dry.exit_code == 1
    for line, column in expected_problems():
        assert f"{bad}: line {line}" + (f", column {column}:" if column else ":") in dry.output
    assert "7 bad line(s), 9 problem(s) in 10 row(s); nothing imported" in dry.output
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"reference_id": "c", "amount": 3}) + "\n", encoding="utf-8")
    check = runner.invoke(main, ["import", "deal", str(good), "--dry-run", "--store", db])
    assert check.exit_code == 0 and "dry run: 1 row(s) valid" in check.output
    assert open_store(db).count_entries() == 0
    done = runner.invoke(main, ["import", "deal", str(good), "--store", db])
    assert done.exit_code == 0 and "1 created" in done.output
    latin = tmp_path / "latin.csv"
    latin.write_bytes("title,reference_id\ncaf\xe9,c\n".encode("latin-1"))
    refused = runner.invoke(main, ["import", "deal", str(latin), "--store", db])
    assert refused.exit_code == 1 and "is not UTF-8 text" in refused.output
    unknown = runner.invoke(main, ["import", "nope", str(good), "--store", db])
    assert unknown.exit_code == 1 and "no CRM entity 'nope'" in unknown.output
    no_format = runner.invoke(main, ["export", "deal", "--store", db])
    assert no_format.exit_code == 2 and "pass --format csv or --format jsonl" in no_format.output
    assert "Traceback" not in dry.output + refused.output + unknown.output


def test_export_and_import_in_real_processes(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    store_url = f"sqlite:///{site / 'instance' / 'crm.db'}"
    (site / "instance").mkdir()
    crm = Crm(open_store(store_url))
    customers = populate(crm)
    crm.close()

    def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "crm_templates", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "PYTHONUTF8": "1"},
        )

    out = tmp_path / "deal.csv"
    exported = run("export", "deal", "--site", str(site), "--output", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "exported 32 entries of 'deal'" in exported.stderr
    companies = run("export", "company", "--site", str(site), "--format", "jsonl")
    assert companies.returncode == 0 and len(companies.stdout.splitlines()) == 3
    target = tmp_path / "target.db"
    fresh = Crm(open_store(f"sqlite:///{target}"))
    for slug in ("company", "deal"):
        fresh.store.create_entity(open_store(store_url).get_entity(slug))  # type: ignore[arg-type]
    fresh.close()
    (tmp_path / "company.jsonl").write_text(companies.stdout, encoding="utf-8")
    for slug, path in (("company", tmp_path / "company.jsonl"), ("deal", out)):
        imported = run("import", slug, str(path), "--store", f"sqlite:///{target}")
        assert imported.returncode == 0, imported.stderr
    assert entries(open_store(f"sqlite:///{target}"), "deal") == entries(
        open_store(store_url), "deal"
    )
    listed = run("customers", "--site", str(site))
    assert listed.returncode == 0 and listed.stdout == "" and "no customers" in listed.stderr
    again = run("import", "deal", str(out), "--store", f"sqlite:///{target}")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert set(customers.values()) <= {
        e.reference_id for e in open_store(f"sqlite:///{target}").iter_entries("deal")
    }
