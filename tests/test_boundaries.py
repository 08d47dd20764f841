"""Layer boundaries of SPEC §2, checked in fresh interpreters via sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("renderers", ["jinja2", "flask", "crm_templates"]),
    ("crm_templates", ["jinja2", "flask", "renderers", "click", "elasticsearch"]),
    ("crm_templates.service", ["jinja2", "flask", "renderers", "click", "elasticsearch"]),
    ("crm_templates.storage.sqlite", ["jinja2", "flask", "renderers", "elasticsearch"]),
    ("crm_templates.extension", ["flask", "crm_templates.storage.sqlite", "crm_templates.storage.elasticsearch", "crm_templates.server"]),
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


def test_nothing_but_the_cli_imports_the_server() -> None:
    offenders = []
    for path in (ROOT / "crm_templates").rglob("*.py"):
        if "server" in path.relative_to(ROOT / "crm_templates").parts or path.name == "cli.py":
            continue
        text = path.read_text(encoding="utf-8")
        if "from .server" in text or "crm_templates.server" in text or "import flask" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
