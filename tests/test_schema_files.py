"""Schema files (issue 11, item 4): the JSON Schemas of crm.yaml and seed.yaml accept every
sample site and fixture, broken files fail with file:line:column: path: expectation, the
`schema` command prints the shipped files, `serve` and `seed` refuse a broken file cleanly,
and the CLI is imported by nothing in the package."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from crm_templates.documents import SCHEMA_NAMES, format_path, schema_text, shipped_schema
from crm_templates.errors import SchemaFileError
from crm_templates.loading import (
    ensure_schema,
    load_schema_file,
    load_seed,
    read_schema_file,
    read_seed_file,
    store_is_empty,
)
from crm_templates.schemadoc import SECTIONS, resolve, schema_reference
from crm_templates.service import Crm
from crm_templates.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
SITES = sorted(p for p in (ROOT / "sample_sites").iterdir() if (p / "crm.yaml").exists())
SCHEMA_DIR = ROOT / "crm_templates" / "schemas"


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """The real `crm-templates` process (this worktree's code)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CRM_STORE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "crm_templates", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )  # fmt: skip


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- the sample sites and the test fixtures validate ----------------------------------------


@pytest.mark.parametrize("site", SITES, ids=lambda p: p.name)
def test_sample_site_files_validate(site: Path) -> None:
    assert len(SITES) == 3
    entities = read_schema_file(site / "crm.yaml").entities
    assert entities and all(d["slug"] for _, d in entities)
    seed = read_seed_file(site / "seed.yaml")
    assert seed.entries
    # What an editor does: the plain data against the shipped schema, no extra checks.
    for name in SCHEMA_NAMES:
        data = yaml.safe_load((site / f"{name}.yaml").read_text(encoding="utf-8"))
        errors = list(Draft202012Validator(shipped_schema(name)).iter_errors(data))
        assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize("site", SITES, ids=lambda p: p.name)
@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_sample_sites_point_editors_at_the_shipped_schema(site: Path, name: str) -> None:
    first = (site / f"{name}.yaml").read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    target = (site / match.group(1)).resolve()
    assert target == SCHEMA_DIR / f"{name}.schema.json"
    assert target.read_text(encoding="utf-8") == schema_text(name)


def _fixture_schemas() -> list[tuple[str, Any]]:
    """Module-level crm.yaml fixtures of the test suite: ``*_YAML`` strings declaring
    ``entities:`` and ``SCHEMA`` literals (a dict or list of entity definitions)."""
    found = []
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if not isinstance(node, ast.Assign) or not isinstance(node.targets[0], ast.Name):
                continue
            name = node.targets[0].id
            if not (name.endswith("YAML") or name == "SCHEMA"):
                continue
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(value, str) and "entities:" not in value:
                continue
            found.append((f"{path.name}:{name}", value))
    return found


FIXTURES = _fixture_schemas()


def test_fixture_walk_finds_the_suites_schema_files() -> None:
    names = {name for name, _ in FIXTURES}
    assert {"test_server.py:CRM_YAML", "test_cli.py:SCHEMA", "test_lint.py:SCHEMA"} <= names


@pytest.mark.parametrize(("name", "value"), FIXTURES, ids=[n for n, _ in FIXTURES])
def test_fixture_schema_files_validate(tmp_path: Path, name: str, value: Any) -> None:
    if isinstance(value, str):
        path = write(tmp_path, "crm.yaml", value)
    else:
        path = write(tmp_path, "crm.json", json.dumps(value))
    assert load_schema_file(path)


@pytest.mark.parametrize(
    "text",
    [
        "entities:\n  - slug: a\n",
        "entities:\n  a:\n  b: {name: B}\n",  # a mapping of slug to definition
        "- slug: a\n- slug: b\n",  # a bare list
        "a: {entity_mode: data}\n",  # a bare mapping
        "entities: []\n",
        "entities:\n  - slug: a\n    singularName: A\n    entityMode: data\n"
        "    fields:\n      - {key: n, type: number, uiEditable: false,\n"
        "         reportingConfig: {aggregationType: numeric, bucketSize: 5, baseline: {min: 0}}}\n",
        "entities:\n  - slug: a\n    fields:\n      - {key: s, type: select, options: [x, {value: y, label: 2}]}\n"
        "      - {key: r, type: reference, targetEntity: b, displayField: s}\n"
        "      - {key: t, options: [], validation_rules: {required: true}, visible_to_team_ids: [t1, 7]}\n",
        "entities:\n  - slug: a\n    preset: leads\n    pipelines:\n"
        "      - {slug: p, id: pip_1, stages: [{slug: s, id: stg_1, position: 0, semanticStatus: won, probability: 100}]}\n",
        "entities:\n  - slug: a\n    name:\n    fields:\n    pipelines:\n",  # empty values
        "base: &base {entity_mode: data}\nother: {<<: *base, name: Other}\n",  # YAML merge keys
    ],
)
def test_every_shape_the_loader_accepted_still_loads(tmp_path: Path, text: str) -> None:
    assert isinstance(load_schema_file(write(tmp_path, "crm.yaml", text)), list)


def test_json_schema_files_may_name_their_schema(tmp_path: Path) -> None:
    path = write(
        tmp_path, "crm.json",
        json.dumps({"$schema": "crm.schema.json", "entities": [{"slug": "a"}]}),
    )  # fmt: skip
    assert [d["slug"] for d in load_schema_file(path)] == ["a"]
    seed = write(tmp_path, "seed.json", json.dumps({"$schema": "seed.schema.json"}))
    assert read_seed_file(seed).entries == ()


# --- broken files: file, line, column, path and what is expected ------------------------------

ENTITY = "entities:\n  - slug: a\n"
BROKEN_CRM = [
    # (name, text, line, column, path, expectation)
    ("wrong type", ENTITY + "    fields: 3\n", 3, 13, "entities[0].fields", "expected a list; got the number 3"),
    ("unknown key", ENTITY + "    colour: red\n", 3, 5, "entities[0].colour", "unknown key 'colour'. Did you mean 'color'?"),
    ("missing required key", "entities:\n  - name: A\n", 2, 5, "entities[0]", "missing required key 'slug'"),
    ("bad slug", "entities:\n  - slug: Bad Slug\n", 2, 11, "entities[0].slug", "expected a slug: lowercase letters"),
    ("unknown field type", ENTITY + "    fields:\n      - {key: n, type: numbr}\n", 4, 24, "entities[0].fields[0].type", "expected a field type: text, textarea"),
    ("select without options", ENTITY + "    fields:\n      - {key: s, type: select}\n", 4, 9, "entities[0].fields[0]", "needs `options:`"),
    ("options on text", ENTITY + "    fields:\n      - {key: s, options: [x]}\n", 4, 27, "entities[0].fields[0].options", "only select and multiselect fields take options"),
    ("reference without target", ENTITY + "    fields:\n      - {key: r, type: reference}\n", 4, 9, "entities[0].fields[0]", "needs `target_entity:`"),
    ("bad enum in reporting config", ENTITY + "    fields:\n      - key: n\n        reporting_config: {preferred_chart: donut}\n", 5, 45, "entities[0].fields[0].reporting_config.preferred_chart", "expected a chart: kpi, histogram, pie, bar or line; got the string 'donut'"),
    ("probability out of range", ENTITY + "    pipelines:\n      - slug: p\n        stages: [{slug: s, probability: 150}]\n", 5, 41, "entities[0].pipelines[0].stages[0].probability", "at most 100"),
    ("pipeline without stages", ENTITY + "    pipelines:\n      - slug: p\n", 4, 9, "entities[0].pipelines[0]", "missing required key 'stages'"),
    ("unquoted date as a name", ENTITY + "    name: 2025-01-01\n", 3, 11, "entities[0].name", "quote it in YAML"),
    ("duplicate key", ENTITY + "    name: A\n    name: B\n", 4, 5, "entities[0].name", "duplicate key 'name'"),
    ("duplicate field key", ENTITY + "    fields:\n      - {key: s}\n      - {key: s}\n", 5, 15, "entities[0].fields[1].key", "field key 's' is declared twice"),
    ("duplicate entity", ENTITY + "  - slug: a\n", 3, 11, "entities[1].slug", "entity 'a' is declared twice"),
    ("bad colour", ENTITY + "    color: notacolour\n", 3, 12, "entities[0].color", "must be one CSS colour"),
    ("bad stage colour", ENTITY + "    pipelines: [{slug: p, stages: [{slug: s, color: nope}]}]\n", 3, 53, "entities[0].pipelines[0].stages[0].color", "must be one CSS colour"),
    ("data mode with pipelines", ENTITY + "    entity_mode: data\n    pipelines: [{slug: p, stages: [{slug: s}]}]\n", 4, 5, "entities[0].pipelines", "data mode, which has no pipelines"),
    ("both spellings", ENTITY + "    fields:\n      - {key: s, ui_editable: true, uiEditable: false}\n", 4, 37, "entities[0].fields[0].uiEditable", "the same key; give one of them"),
    ("misspelt entities", "entites:\n  - slug: a\n", 2, 3, "entites", "to list entities, write `entities:`"),
    ("bad slug as a mapping key", "entities:\n  Bad: {}\n", 2, 3, "entities.Bad", "expected an entity slug"),
    ("empty file", "", 1, 1, "", "expected a mapping with `entities:`"),
    ("bad YAML syntax", ENTITY + "    fields: [\n", 4, 1, "", "not valid YAML: expected the node content"),
    ("tab indentation", ENTITY + "\tname: A\n", 3, 1, "", "a tab character: YAML indents with spaces only"),
    ("recursive alias", "a: &x [*x]\n", 1, 4, "a[0]", "recursive structure"),
]  # fmt: skip


def check(info: pytest.ExceptionInfo[SchemaFileError], path: Path, line: int, column: int,
          where: str, expected: str) -> None:  # fmt: skip
    error = info.value
    assert (error.file, error.line, error.column, error.path) == (str(path), line, column, where), (
        str(error)
    )
    assert expected in error.message, error.message
    assert str(error).startswith(f"{path}:{line}:{column}: {where or 'top level'}: ")


@pytest.mark.parametrize(
    ("text", "line", "column", "where", "expected"),
    [case[1:] for case in BROKEN_CRM],
    ids=[case[0] for case in BROKEN_CRM],
)
def test_broken_schema_file_names_file_line_column_path_and_expectation(
    tmp_path: Path, text: str, line: int, column: int, where: str, expected: str
) -> None:
    path = write(tmp_path, "crm.yaml", text)
    with pytest.raises(SchemaFileError) as info:
        read_schema_file(path)
    check(info, path, line, column, where, expected)


SEED = "customers:\n  - {key: dana, email: dana@example.com}\nentries:\n"
BROKEN_SEED = [
    ("entry without entity", SEED + "  - customer: dana\n    values: {n: 1}\n", 4, 5, "entries[0]", "missing required key 'entity'"),
    ("entry without owner", SEED + "  - entity: notes\n", 4, 5, "entries[0]", "needs `customer: <seed customer key>` or `reference:"),
    ("customer and reference", SEED + "  - {entity: notes, customer: dana, reference: {type: site, id: x}}\n", 4, 5, "entries[0]", "not both"),
    ("unknown customer", SEED + "  - {entity: notes, customer: sam}\n", 4, 31, "entries[0].customer", "no seed customer has the key 'sam'; customers: 'dana'"),
    ("customer without key", "customers:\n  - email: a@example.com\n", 2, 5, "customers[0]", "missing required key 'key'"),
    ("unknown entry key", SEED + "  - {entity: notes, customer: dana, valuess: {}}\n", 4, 37, "entries[0].valuess", "unknown key 'valuess'. Did you mean 'values'?"),
    ("bad reference type", SEED + "  - {entity: notes, reference: {type: 'a b', id: x}}\n", 4, 39, "entries[0].reference.type", "expected a reference type"),
    ("duplicate entry key", SEED + "  - {entity: notes, customer: dana, key: x}\n  - {entity: notes, customer: dana, key: x}\n", 5, 42, "entries[1].key", "entry key 'x' is used twice"),
    ("values not a mapping", SEED + "  - {entity: notes, customer: dana, values: [1]}\n", 4, 45, "entries[0].values", "expected a mapping; got a list"),
    ("top level a list", "- entity: notes\n", 1, 1, "", "expected a mapping with `customers:` and/or `entries:`"),
    ("tab indentation", "entries:\n\t- entity: notes\n", 2, 1, "", "a tab character"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "column", "where", "expected"),
    [case[1:] for case in BROKEN_SEED],
    ids=[case[0] for case in BROKEN_SEED],
)
def test_broken_seed_file_names_file_line_column_path_and_expectation(
    tmp_path: Path, text: str, line: int, column: int, where: str, expected: str
) -> None:
    path = write(tmp_path, "seed.yaml", text)
    with pytest.raises(SchemaFileError) as info:
        read_seed_file(path)
    check(info, path, line, column, where, expected)


BROKEN_JSON = [
    ("syntax", '{"entities": [{"slug": "a",}]}', 1, 28, "", "not valid JSON"),
    ("duplicate key", '{"entities": [{"slug": "a",\n "slug": "b"}]}', 2, 2, "entities[0].slug", "duplicate key 'slug'"),
    ("bad type", '{"entities": [{"slug": "a",\n  "fields": [{"key": "x", "type": "nope"}]}]}', 2, 35, "entities[0].fields[0].type", "expected a field type"),
    ("unknown key", '{"entities": [\n {"slug": "a", "colour": "red"}]}', 2, 16, "entities[0].colour", "unknown key 'colour'"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "line", "column", "where", "expected"),
    [case[1:] for case in BROKEN_JSON],
    ids=[case[0] for case in BROKEN_JSON],
)
def test_broken_json_schema_file_is_located_too(
    tmp_path: Path, text: str, line: int, column: int, where: str, expected: str
) -> None:
    path = write(tmp_path, "crm.json", text)
    with pytest.raises(SchemaFileError) as info:
        read_schema_file(path)
    check(info, path, line, column, where, expected)


def test_every_problem_is_listed_in_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "crm.yaml", ENTITY + "    colour: red\n  - slug: B\n    fields: 3\n")
    with pytest.raises(SchemaFileError) as info:
        read_schema_file(path)
    assert [(line, where) for _, line, _, where, _ in info.value.problems] == [
        (3, "entities[0].colour"), (4, "entities[1].slug"), (5, "entities[1].fields"),
    ]  # fmt: skip
    assert len(str(info.value).splitlines()) == 3


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8)]
    path = write(tmp_path, "crm.yaml", "\n".join(lines) + "\n")
    with pytest.raises(SchemaFileError, match=r"expands .* into more than 1,000,000 values"):
        read_schema_file(path)


# attack11: a scalar that parses but Python cannot build (an impossible date, a number with
# thousands of digits) raised a bare ValueError without file, line or path.
UNBUILDABLE = [
    # (name, file, text, line, column, path, expectation)
    ("impossible date", "crm.yaml", ENTITY + "    name: 2020-13-45\n", 3, 11, "entities[0].name",
     "not a usable value '2020-13-45': month must be in 1..12 (quote it"),
    ("impossible timestamp in a list", "crm.yaml",
     ENTITY + "    fields:\n      - {key: x, type: text, label: 2021-02-30 10:00:00}\n", 4, 37,
     "entities[0].fields[0].label", "day is out of range for month"),
    ("5,000-digit integer", "crm.yaml", ENTITY + "    name: " + "1" * 5000 + "\n", 3, 11,
     "entities[0].name", "a number with too many digits"),
    ("5,000-digit JSON integer", "crm.json",
     '{"entities": [{"slug": "a",\n "name": ' + "1" * 5000 + "}]}", 2, 10, "entities[0].name",
     "a number with too many digits"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "text", "line", "column", "where", "expected"),
    [(c[1], c[2], c[3], c[4], c[5], c[6]) for c in UNBUILDABLE],
    ids=[c[0] for c in UNBUILDABLE],
)
def test_unbuildable_scalar_is_located(
    tmp_path: Path, name: str, text: str, line: int, column: int, where: str, expected: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(SchemaFileError) as info:
        read_schema_file(path)
    check(info, path, line, column, where, expected)
    assert len(str(info.value)) < 400  # the huge value is not echoed


def test_utf8_bom_is_read_and_other_encodings_are_named(tmp_path: Path) -> None:
    """attack11: a JSON file with a UTF-8 BOM failed (YAML read it); UTF-16 was 'not UTF-8'."""
    for name in ("crm.json", "crm.yaml"):
        path = tmp_path / name
        path.write_bytes(b"\xef\xbb\xbf" + b'{"entities": [{"slug": "a", "name": "A"}]}')
        assert [e["slug"] for e in load_schema_file(path)] == ["a"]
        path.write_text('{"entities": []}', encoding="utf-16")
        with pytest.raises(SchemaFileError, match="the file is UTF-16 text: save it as UTF-8"):
            read_schema_file(path)


def test_format_path() -> None:
    assert format_path(("entities", 0, "fields", 2, "type")) == "entities[0].fields[2].type"
    assert format_path(("entities", "weight-tracker")) == "entities.weight-tracker"
    assert format_path(("entities", "a b")) == 'entities["a b"]'
    assert format_path(()) == ""


# --- loading into a store: the whole file is checked before anything is written --------------


@pytest.fixture
def crm(tmp_path: Path) -> Any:
    with Crm(open_store(f"sqlite:///{tmp_path / 'crm.db'}")) as crm:
        yield crm


def test_a_bad_entity_anywhere_stops_the_whole_schema_file(tmp_path: Path, crm: Crm) -> None:
    path = write(
        tmp_path, "crm.yaml", ENTITY + "  - slug: b\n    fields: [{key: x, type: money}]\n"
    )
    with pytest.raises(SchemaFileError) as info:
        ensure_schema(crm, path)
    assert (info.value.line, info.value.path) == (4, "entities[1].fields[0].type")
    assert crm.list_entities() == []  # entity 'a' was fine, and was not created either


SEED_CRM = """\
entities:
  - slug: notes
    fields:
      - {key: n, type: number}
      - {key: other, type: reference, target_entity: notes}
    pipelines:
      - slug: p
        stages: [{slug: open}, {slug: done}]
  - slug: catalog
    entity_mode: data
"""

BAD_SEED_VALUES = [
    ("unknown entity", "  - {entity: nope, customer: dana}\n", 4, 14, "entries[0].entity", "no CRM entity 'nope'. Did you mean 'notes'?"),
    ("bad value", "  - {entity: notes, customer: dana, values: {n: abc}}\n", 4, 49, "entries[0].values.n", "number"),
    ("undeclared field", "  - {entity: notes, customer: dana, values: {m: 1}}\n", 4, 46, "entries[0].values.m", "declares no field 'm'; declared keys: n, other"),
    ("reference to a later key", "  - {entity: notes, customer: dana, values: {other: x}}\n  - {entity: notes, customer: dana, key: x}\n", 4, 53, "entries[0].values.other", "'x': no earlier entry has this 'key'"),
    ("unknown stage", "  - {entity: notes, customer: dana, stage: closed}\n", 4, 44, "entries[0].stage", "has no stage 'closed'"),
    ("stage in data mode", "  - {entity: catalog, reference: {type: site, id: c}, stage: open}\n", 4, 62, "entries[0].stage", "data mode"),
    ("bad email", "  - {entity: notes, customer: dana}\n", 2, 24, "customers[0].email", "not a valid email address"),
    ("bad reference id", "  - {entity: notes, reference: {type: site, id: 'a{b'}}\n", 4, 32, "entries[0].reference", "referenceId may not contain"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "line", "column", "where", "expected"),
    [case[1:] for case in BAD_SEED_VALUES],
    ids=[case[0] for case in BAD_SEED_VALUES],
)
def test_seed_checked_against_the_store_writes_nothing_when_wrong(
    tmp_path: Path, crm: Crm, entries: str, line: int, column: int, where: str, expected: str
) -> None:
    ensure_schema(crm, write(tmp_path, "crm.yaml", SEED_CRM))
    email = "dana@@example.com" if "email" in where else "dana@example.com"
    # A good first entry, so a loader writing as it goes would leave it behind.
    text = f"customers:\n  - {{key: dana, email: {email}}}\nentries:\n{entries}"
    if "values.other" not in where:
        text += "  - {entity: notes, customer: dana, values: {n: 1}}\n"
    path = write(tmp_path, "seed.yaml", text)
    with pytest.raises(SchemaFileError) as info:
        load_seed(crm, path)
    check(info, path, line, column, where, expected)
    assert store_is_empty(crm)


def test_seed_loads_with_references_by_key(tmp_path: Path, crm: Crm) -> None:
    ensure_schema(crm, write(tmp_path, "crm.yaml", SEED_CRM))
    path = write(
        tmp_path, "seed.yaml",
        "customers:\n  - {key: dana, email: dana@example.com}\nentries:\n"
        "  - {entity: notes, customer: dana, key: first, values: {n: 1}, stage: done}\n"
        "  - {entity: notes, customer: dana, values: {other: first}}\n",
    )  # fmt: skip
    assert load_seed(crm, path) == {"customers": 1, "entries": 2}
    customer = crm.find_customer("dana@example.com")
    assert customer is not None
    second, first = crm.bind(customer.id).get_entries(slug="notes")
    assert second.values == {"other": first.id}
    assert first.values == {"n": 1.0}


# --- the schema command and the reference ------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_command_prints_the_shipped_schema(name: str) -> None:
    result = run_cli("schema", name)
    assert result.returncode == 0, result.stderr
    shipped = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert result.stdout == shipped
    schema = json.loads(result.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_command_refuses_other_names() -> None:
    result = run_cli("schema", "site")
    assert result.returncode == 2
    assert "'crm'" in result.stderr and "'seed'" in result.stderr


def _properties(schema: Any, where: str = "#") -> list[tuple[str, str, Any]]:
    """Every ``(pointer of the mapping, key, subschema)`` in a schema."""
    found = []
    if isinstance(schema, dict):
        for key, sub in (schema.get("properties") or {}).items():
            found.append((where, key, sub))
        for key, sub in schema.items():
            found += _properties(sub, f"{where}/{key}")
    elif isinstance(schema, list):
        for n, sub in enumerate(schema):
            found += _properties(sub, f"{where}/{n}")
    return found


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_key_has_a_description_and_a_row_in_the_reference(name: str) -> None:
    schema = shipped_schema(name)
    reference = schema_reference(name)
    undocumented, missing = [], []
    for where, key, sub in _properties(schema):
        if "/allOf/" in where:
            continue  # the field's conditional rules restate keys documented above them
        target = _merged_ref(schema, sub)
        if not target.get("description"):
            undocumented.append(f"{where}: {key}")
        if f"`{key}`" not in reference:
            missing.append(f"{where}: {key}")
    assert (undocumented, missing) == ([], [])


def _merged_ref(schema: Any, sub: Any) -> Any:
    """A property's schema with the description its ``$ref`` target gives it."""
    while "description" not in sub and "$ref" in sub:
        sub = resolve(schema, sub["$ref"])
    return sub


def test_reference_sections_cover_every_mapping_and_the_command_prints_them() -> None:
    for name in SCHEMA_NAMES:
        schema = shipped_schema(name)
        covered = {resolve(schema, pointer).get("title") for _, _, pointer in SECTIONS[name]}
        for key, definition in schema.get("$defs", {}).items():
            if definition.get("properties") and key not in ("entitiesBySlug", "entityBody"):
                assert definition.get("title") in covered, key
    result = run_cli("schema", "seed", "--markdown")
    assert result.returncode == 0, result.stderr
    assert result.stdout == schema_reference("seed")
    assert "| `customer` | seed key |  | The `key` of a seed customer" in result.stdout


# --- the commands refuse a broken file cleanly (real processes) --------------------------------


def make_site(tmp_path: Path, crm_yaml: str, seed_yaml: str | None = None) -> Path:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text("hello", encoding="utf-8")
    (site / "crm.yaml").write_text(crm_yaml, encoding="utf-8")
    if seed_yaml is not None:
        (site / "seed.yaml").write_text(seed_yaml, encoding="utf-8")
    return site


@pytest.mark.slow
def test_serve_refuses_to_start_with_a_broken_crm_yaml(tmp_path: Path) -> None:
    site = make_site(tmp_path, ENTITY + "    fields:\n      - {key: n, type: numbr}\n")
    db = tmp_path / "crm.db"
    result = run_cli("serve", str(site), "--port", "0", "--store", f"sqlite:///{db}")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert (
        f"Error: {site / 'crm.yaml'}:4:24: entities[0].fields[0].type: expected a field type: "
        in result.stderr
    )
    assert "Did you mean 'number'?" in result.stderr
    assert "Traceback" not in output and "Serving" not in output


@pytest.mark.slow
def test_seed_command_names_the_line_of_an_entry_without_entity(tmp_path: Path) -> None:
    # The example: this used to fail with "entries[0]: 'entity'".
    site = make_site(
        tmp_path, ENTITY, "entries:\n  - reference: {type: site, id: c}\n    values: {}\n"
    )
    result = run_cli("seed", str(site), "--store", f"sqlite:///{tmp_path / 'crm.db'}")
    assert result.returncode == 1
    assert result.stderr == (
        f"Error: {site / 'seed.yaml'}:2:5: entries[0]: missing required key 'entity'\n"
    )


# --- the import graph: nothing in the package imports the CLI ----------------------------------


def test_lint_and_the_server_do_not_import_the_cli() -> None:
    code = (
        "import json, sys\n"
        "import crm_templates.lint, crm_templates.loading, crm_templates.server.cli\n"
        "import crm_templates.server.state, crm_templates.server.seed\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('crm_templates'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    loaded = json.loads(out)
    assert "crm_templates.server.cli" in loaded
    assert "crm_templates.cli" not in loaded


def test_only_the_entry_point_imports_the_cli_module() -> None:
    importers = []
    package = ROOT / "crm_templates"
    for path in package.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        parts = module.split(".")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                # Relative to the module's package (an __init__ module's package is its folder).
                base = parts[: len(parts) - node.level] if node.level else []
                target = ".".join([*base, *(node.module or "").split(".")]).strip(".")
                names = [target, *(f"{target}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if "crm_templates.cli" in names:
                importers.append(module)
    # The entry point, and the Flask extension's `flask crm` group, which offers the same
    # commands on an app's store (issue 11, item 1); neither is imported by the core or lint.
    assert sorted(set(importers)) == ["crm_templates.__main__", "crm_templates.flask"]


# attack11: the core's messages echoed hostile input whole (`{value!r}`): a 1 MB slug, mode,
# field key, type or option gave a 1 MB error message (into logs, error pages, CLI output).
BIG = 1_000_000
HUGE_DEFINITIONS = {
    "slug": {"slug": "A" * BIG},
    "mode": {"slug": "a", "entityMode": "x" * BIG},
    "field key": {"slug": "a", "fields": [{"key": "!" * BIG}]},
    "field type": {"slug": "a", "fields": [{"key": "k", "type": "t" * BIG}]},
    "unknown key": {"slug": "a", "fields": [{"key": "k", "z" * BIG: 1}]},
    "declared twice": {"slug": "a", "fields": [{"key": "k" * BIG}, {"key": "k" * BIG}]},
    "options": {"slug": "a", "fields": [{"key": "k", "type": "select", "options": [[1] * BIG]}]},
    "pipelines": {"slug": "a", "pipelines": "p" * BIG},
}


@pytest.mark.parametrize("definition", HUGE_DEFINITIONS.values(), ids=HUGE_DEFINITIONS.keys())
def test_a_huge_value_is_not_echoed_whole(definition: dict[str, Any]) -> None:
    from crm_templates.errors import CrmError

    crm = Crm(open_store("sqlite:///:memory:"))
    with pytest.raises(CrmError) as raised:
        crm.ensure_entity(**definition)
    assert len(str(raised.value)) < 500, str(raised.value)[:300]
    crm.close()


def test_a_huge_template_argument_is_not_echoed_whole() -> None:
    from jinja2.sandbox import SandboxedEnvironment

    from crm_templates import CrmExtension
    from crm_templates.extension import CrmTemplateError

    crm = Crm(open_store("sqlite:///:memory:"))
    crm.ensure_entity(slug="a", fields=[{"key": "k"}])
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    env.install_crm(crm, on_error="raise")  # type: ignore[attr-defined]
    for call in (
        "GetCrmField(slug='a', fieldKey=big)",
        "GetCrmField(slug=big, fieldKey='k')",
        "GetCrmEntries(slug='a', pipeline=big)",
        "GetCrmEntries(slug='a', limit=big)",
    ):
        with pytest.raises(CrmTemplateError) as raised:
            env.from_string("{{ " + call + " }}").render(customer_id="c", big="q" * BIG)
        assert len(str(raised.value)) < 600, (call, str(raised.value)[:300])
    crm.close()
