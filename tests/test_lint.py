"""``crm-templates lint``: unknown functions, options, slugs and keys found without rendering."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from crm_templates.cli import main
from crm_templates.lint import lint_templates

SCHEMA = {
    "entities": [
        {
            "slug": "weight-tracker",
            "fields": [
                {"key": "current_weight", "type": "number"},
                {"key": "goal_weight", "type": "number"},
            ],
            "pipelines": [{"slug": "journey", "stages": [{"slug": "started"}, {"slug": "done"}]}],
        },
        {
            "slug": "deals",
            "fields": [
                {"key": "amount", "type": "number"},
                {"key": "partner", "type": "reference", "target_entity": "weight-tracker"},
            ],
        },
    ]
}

GOOD = """\
{% set w = GetCrmField(slug='weight-tracker', fieldKey='current_weight') %}
{{ getCrmFields({'crmEntitySlug': 'weight-tracker', 'field_keys': ['goal_weight']}) }}
{% do SetCrmFields({'slug': 'weight-tracker', 'fields': {'goal_weight': 70}}) %}
{% do setCrmFields(slug='weight-tracker', fields=[{'fieldKey': 'current_weight', 'value': 1}]) %}
{% do MoveCrmToStage(slug='weight-tracker', stageSlug='done', async=true) %}
{% do MoveCrmToEntity(fromSlug='weight-tracker', toSlug='deals', fieldMap={'goal_weight': 'amount'}) %}
{% do SetCrmRelation(slug='deals', relationKey='partner', targetEntryId=some_id) %}
{% do EnsureCrmEntity(slug='notes', fields=[{'key': 'text'}]) %}
{{ GetCrmField(slug='notes', fieldKey='text') }}
{{ GetCrmField(options) }} {{ GetCrmField(slug=dynamic, fieldKey=also_dynamic) }}
{{ 'weight-tracker' | crm_field('goal_weight') }} {{ 'deals' | crm_entries(limit=5) }}
{{ 'weight-tracker' | crm_fields(['goal_weight']) }} {{ 'deals' | crm_label('amount') }}
{{ entry | crm_render('amount') }} {{ 'done' | crm_stage('weight-tracker') }}
{% macro crmCard(e) %}{{ e.title }}{% endmacro %}{{ crmCard(w) }}
{% for crmRow in [] %}{% endfor %}
"""

# (template line, expected message fragment)
BAD = [
    ("{{ getCrmFeild(slug='weight-tracker', fieldKey='goal_weight') }}",
     "unknown CRM function 'getCrmFeild'; did you mean getCrmField?"),
    ("{% do SetCrmFeilds({'slug': 'weight-tracker', 'fields': {}}) %}",
     "did you mean SetCrmFields?"),
    ("{{ GetCrmField({'slug': 'weight-trakcer', 'fieldKey': 'x'}) }}",
     "unknown entity slug 'weight-trakcer'; did you mean weight-tracker?"),
    ("{{ GetCrmField(slug='weight-tracker', fieldKey='curent_weight') }}",
     "entity 'weight-tracker' has no field 'curent_weight'; did you mean current_weight?"),
    ("{{ GetCrmField(slug='weight-tracker', fieldKey='goal_weight', referenceID='x') }}",
     "GetCrmField: unknown option 'referenceID'; did you mean referenceId?"),
    ("{{ GetCrmFields(slug='weight-tracker', fieldKeys=['goal_weight', 'gaol']) }}",
     "has no field 'gaol'"),
    ("{% do SetCrmFields({'slug': 'deals', 'fields': [{'fieldKey': 'amout', 'value': 1}]}) %}",
     "entity 'deals' has no field 'amout'"),
    ("{% do SetCrmField(slug='weight-tracker') %}",
     "SetCrmField: missing required option(s) fieldKey, value"),
    ("{% do SetCrmRelation(slug='deals', relationKey='partnr', targetEntryId=x) %}",
     "has no field 'partnr'"),
    ("{% do MoveCrmToEntity(fromSlug='deals', toSlug='weight-tracker', fieldMap={'amount': 'x'}) %}",
     "entity 'weight-tracker' has no field 'x'"),
    ("{% do MoveCrmToStage(slug='weight-tracker', stageSlug='don') %}",
     "has no stage 'don'; did you mean done?"),
    ("{% do MoveCrmToPipeline(slug='weight-tracker', pipelineSlug='sales') %}",
     "has no pipeline 'sales'"),
    ("{{ GetCrmField('weight-tracker', 'goal_weight') }}", "takes one options mapping"),
    ("{{ 'weight-tracker' | crm_feild('goal_weight') }}",
     "unknown filter 'crm_feild'; did you mean crm_field?"),
    ("{{ 'weight-tracker' | crm_field('goal') }}", "has no field 'goal'"),
    ("{{ 'wieght-tracker' | crm_entries }}", "unknown entity slug 'wieght-tracker'"),
    ("{{ 'deals' | crm_field('amount', referenceTyp='x') }}", "unknown option 'referenceTyp'"),
    ("{{ 'deals' | crm_label('amt') }}", "entity 'deals' has no field 'amt'"),
    ("{{ 'done' | crm_stage('nope') }}", "unknown entity slug 'nope'"),
    ("{% if %}", "syntax error"),
]  # fmt: skip


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    """The test schema as a YAML file."""
    path = tmp_path / "crm.yaml"
    path.write_text(yaml.safe_dump(SCHEMA), encoding="utf-8")
    return path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A template directory holding one correct template in a subfolder."""
    root = tmp_path / "pages"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "good.html").write_text(GOOD, encoding="utf-8")
    (root / "notes.md").write_text("{{ getCrmFeild() }} is not a template", encoding="utf-8")
    return root


def run_lint(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["lint", *args])
    return result.exit_code, result.stdout, result.stderr


def test_good_templates_pass(site: Path, schema_file: Path) -> None:
    code, out, err = run_lint(str(site), "--schema", str(schema_file))
    assert (code, out) == (0, ""), out
    assert "1 template(s) OK" in err


@pytest.mark.parametrize(("line", "message"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_template_is_reported(site: Path, schema_file: Path, line: str, message: str) -> None:
    bad = site / "bad.jinja"
    bad.write_text("ok\n\n" + line + "\n", encoding="utf-8")
    code, out, _ = run_lint(str(site), "--schema", str(schema_file))
    assert code == 1
    assert f"{bad}:3: " in out
    assert message in out, out
    assert str(site / "sub" / "good.html") not in out


def test_one_line_per_problem_sorted(site: Path, schema_file: Path) -> None:
    (site / "two.j2").write_text(
        "{{ getCrmFeild() }}\n{{ GetCrmField(slug='nope', fieldKey='x') }}\n", encoding="utf-8"
    )
    code, out, err = run_lint(str(site), "--schema", str(schema_file))
    assert code == 1
    lines = out.splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [f"{site / 'two.j2'}:1", f"{site / 'two.j2'}:2"]
    assert "2 problem(s) in 2 template(s)" in err


def test_without_schema_only_names_and_options_are_checked(site: Path) -> None:
    (site / "t.txt").write_text(
        "{{ GetCrmField(slug='anything', fieldKey='any') }}{{ GetCrmField(slugg='x') }}",
        encoding="utf-8",
    )
    code, out, _ = run_lint(str(site))
    assert code == 1
    assert "unknown option 'slugg'" in out and "anything" not in out


def test_single_file_and_library_api(site: Path, schema_file: Path) -> None:
    code, _, _ = run_lint(str(site / "sub" / "good.html"), "--schema", str(schema_file))
    assert code == 0
    problems, checked = lint_templates(site, SCHEMA["entities"])
    assert (problems, checked) == ([], 1)


def test_bad_schema_file_is_a_clean_error(site: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("entities: [\n", encoding="utf-8")
    code, _, err = run_lint(str(site), "--schema", str(broken))
    assert code == 1 and "not valid YAML" in err


def test_sample_sites_lint_clean() -> None:
    root = Path(__file__).resolve().parent.parent / "sample_sites"
    sites = sorted(p for p in root.glob("*") if (p / "crm.yaml").exists())
    assert sites, f"no sample sites under {root}"
    for s in sites:
        code, out, _ = run_lint(str(s), "--schema", str(s / "crm.yaml"))
        assert code == 0, out


def test_lint_module_does_not_load_jinja() -> None:
    code = "import sys, crm_templates.lint; print('jinja2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # Jinja is imported when the command runs
