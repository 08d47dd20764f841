"""Layer boundaries of SPEC §2, checked in fresh interpreters via sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("fieldtypes", ["jinja2", "flask", "markupsafe", "crm_templates", "renderers", "babel", "phonenumbers"]),
    ("renderers", ["jinja2", "flask", "crm_templates"]),
    ("crm_templates", ["jinja2", "flask", "renderers", "click", "elasticsearch"]),
    ("crm_templates.service", ["jinja2", "flask", "renderers", "click", "elasticsearch"]),
    ("crm_templates.storage.sqlite", ["jinja2", "flask", "renderers", "elasticsearch"]),
    ("crm_templates.webhooks", ["jinja2", "flask", "renderers", "click", "elasticsearch", "requests"]),
    ("crm_templates.extension", ["flask", "crm_templates.storage.sqlite", "crm_templates.storage.elasticsearch", "crm_templates.server"]),
    # Integration modules (issue 11): Flask's and Starlette's own, never the page server, and
    # neither pulls in the other framework or Flask-Login.
    ("crm_templates.flask", ["crm_templates.server", "crm_templates.starlette", "starlette", "flask_login", "elasticsearch"]),
    ("crm_templates.starlette", ["flask", "crm_templates.server", "crm_templates.flask", "starlette", "elasticsearch"]),
]  # fmt: skip


def loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(("module", "forbidden"), CASES)
def test_package_does_not_import_forbidden_layers(module: str, forbidden: list[str]) -> None:
    loaded = loaded_after_import(module)
    leaked = [
        name
        for name in forbidden
        if name in loaded or any(m.startswith(name + ".") for m in loaded)
    ]
    assert leaked == [], f"importing {module} loaded {leaked}"


@pytest.mark.parametrize(
    ("module", "value_code"),
    [("renderers", ["renderers"]), ("crm_templates", ["crm_templates/values.py"])],
)
def test_core_and_renderers_share_one_definition_of_valid(
    module: str, value_code: list[str]
) -> None:
    # Issue 9, item 3: both layers validate field values with `fieldtypes`, the one package
    # they may both import; the code that handles field values keeps no pattern of its own.
    assert "fieldtypes" in loaded_after_import(module)
    files = [
        p for name in value_code for p in sorted((ROOT / name).glob("**/*.py")) or [ROOT / name]
    ]
    own = {
        f"{path.relative_to(ROOT).as_posix()}: {marker}"
        for path in files
        for marker in (
            "re.compile",
            "validate_email(",
            "nh3.clean(",
            "fromisoformat(",
            "urlsplit(url",
        )
        if marker in path.read_text(encoding="utf-8")
    }
    allowed = {
        "crm_templates/values.py: re.compile",  # referenceType, which is not a field type
        "renderers/registry.py: re.compile",  # renderer names
        "renderers/text.py: re.compile",  # line breaks of textarea
        "renderers/formats.py: fromisoformat(",  # of fieldtypes.iso_date's own output
        "renderers/links.py: urlsplit(url",  # a valid file URL's name, for display
    }
    assert own - allowed == set()


# Modules outside server/ that may import Flask: the Flask integration (issue 11, item 1).
FLASK_INTEGRATIONS = {"crm_templates/flask.py"}


def test_nothing_but_the_cli_imports_the_server() -> None:
    offenders = []
    for path in (ROOT / "crm_templates").rglob("*.py"):
        if "server" in path.relative_to(ROOT / "crm_templates").parts or path.name == "cli.py":
            continue
        text = path.read_text(encoding="utf-8")
        name = path.relative_to(ROOT).as_posix()
        imports_flask = "import flask" in text or "from flask " in text or "from flask." in text
        names_server = "from .server" in text or "crm_templates.server" in text
        if names_server or (imports_flask and name not in FLASK_INTEGRATIONS):
            offenders.append(name)
    assert offenders == []


def test_no_core_module_imports_an_integration() -> None:
    # crm_templates.flask and .starlette sit on top of the core and the Jinja extension; the
    # page server uses the Flask one; nothing else may (SPEC §2, issue 11).
    offenders = []
    for path in (ROOT / "crm_templates").rglob("*.py"):
        rel = path.relative_to(ROOT / "crm_templates")
        if "server" in rel.parts or rel.name in ("flask.py", "starlette.py"):
            continue
        text = path.read_text(encoding="utf-8")
        for marker in (
            "from .flask",
            "from .starlette",
            "crm_templates.flask",
            "crm_templates.starlette",
        ):
            if marker in text:
                offenders.append(f"{rel}: {marker}")
    assert offenders == []
