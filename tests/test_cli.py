"""The core commands of ``crm-templates``: ensure and entries (real SQLite files, click runner)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from crm_templates import Crm, open_store
from crm_templates.cli import main

SCHEMA = """
entities:
  - slug: weight-tracker
    name: Weight Tracker
    fields:
      - {key: current_weight, type: number}
      - {key: last_checkin, type: date}
    pipelines:
      - slug: progress
        stages: [{slug: starting}, {slug: goal-reached, semantic_status: won}]
  - slug: cities
    entityMode: data
    fields: [{key: name}]
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store URL for a SQLite file in a temporary folder."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_ensure_creates_then_reports_existing(tmp_path: Path, db: str) -> None:
    schema = tmp_path / "crm.yaml"
    schema.write_text(SCHEMA)
    runner = CliRunner()
    first = runner.invoke(main, ["ensure", str(schema), "--store", db])
    assert first.exit_code == 0, first.output
    assert "weight-tracker: created; fields added: current_weight, last_checkin" in first.output
    assert "cities: created" in first.output
    again = runner.invoke(main, ["ensure", str(schema), "--store", db])
    assert "weight-tracker: exists; fields added: -" in again.output
    store = open_store(db)
    assert [e.slug for e in store.list_entities()] == ["cities", "weight-tracker"]
    store.close()


def test_ensure_json_schema_and_env_store(tmp_path: Path, db: str) -> None:
    schema = tmp_path / "crm.json"
    schema.write_text(
        json.dumps([{"slug": "deals", "fields": [{"key": "value", "type": "number"}]}])
    )
    result = CliRunner().invoke(main, ["ensure", str(schema)], env={"CRM_STORE_URL": db})
    assert result.exit_code == 0, result.output
    store = open_store(db)
    assert store.get_entity("deals") is not None
    store.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Issue 11, item 4: file:line:column: path: what is expected.
        ("entities: [{slug: ok, fields: [{key: a, type: money}]}]", "crm.yaml:1:47: entities[0].fields[0].type: expected a field type: text,"),
        ("entities: 5", "crm.yaml:1:11: entities: expected a list of entity definitions"),
        ("entities: [{slug: ok\n", "crm.yaml:2:1: top level: not valid YAML"),
    ],
)  # fmt: skip
def test_ensure_reports_file_and_entity(tmp_path: Path, db: str, text: str, message: str) -> None:
    schema = tmp_path / "crm.yaml"
    schema.write_text(text)
    result = CliRunner().invoke(main, ["ensure", str(schema), "--store", db])
    assert result.exit_code == 1
    assert str(schema) in result.output and message in result.output
    assert "Traceback" not in result.output


def test_entries_prints_table_and_json(tmp_path: Path, db: str) -> None:
    crm = Crm(open_store(db))
    crm.ensure_entity(slug="log", entityMode="data", fields=[{"key": "n", "type": "number"}])
    view = crm.bind("cus_7")
    for n in (1, 2):
        view.add_field_value(slug="log", fieldKey="n", value=n)
    crm.close()
    runner = CliRunner()
    table = runner.invoke(main, ["entries", "log", "--reference-id", "cus_7", "--store", db])
    assert table.exit_code == 0, table.output
    lines = table.output.strip().splitlines()
    assert len(lines) == 2 and '{"n": 2.0}' in lines[0] and '{"n": 1.0}' in lines[1]
    as_json = runner.invoke(
        main, ["entries", "log", "--reference-id", "cus_7", "--json", "--store", db]
    )
    data = json.loads(as_json.output)
    assert [d["values"] for d in data] == [{"n": 2.0}, {"n": 1.0}]
    assert data[0]["values_flat"] == {"n": 2.0}


def test_entries_unknown_slug_is_a_clean_error(db: str) -> None:
    open_store(db).close()  # an existing store: a read never creates one (test_cli_store)
    result = CliRunner().invoke(main, ["entries", "nope", "--reference-id", "x", "--store", db])
    assert result.exit_code == 1
    assert "no CRM entity 'nope'" in result.output and "Traceback" not in result.output


def test_bad_store_url_is_a_clean_error() -> None:
    result = CliRunner().invoke(
        main, ["entries", "x", "--reference-id", "x", "--store", "mysql://x"]
    )
    assert result.exit_code == 1 and "unknown store URL scheme 'mysql'" in result.output
