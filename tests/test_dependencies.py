"""Dependency floors (issue 8, item 9): pyproject.toml admits no version with a known security
fault the sandbox or the server depends on, the installed versions meet the floors, and the
Jinja sandbox escape CVE-2025-27516 stays closed — in a bare sandbox and on the page server."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from crm_templates.extension import CrmExtension
from crm_templates.server import create_app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before 3.11
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

# The first version of each dependency past its last known security fix, and why. A floor in
# pyproject.toml below one of these admits a vulnerable release.
FIXED_IN = {
    "jinja2": ("3.1.6", "CVE-2024-56201, CVE-2024-56326, CVE-2025-27516: sandbox escapes"),
    "flask": ("3.1.3", "CVE-2023-30861, CVE-2025-47278, CVE-2026-27205 (GHSA-68rp-wp8r-4726)"),
    "werkzeug": ("3.1.6", "GHSA-hgf8-39gv-g3f2, GHSA-87hc-h4r5-73f7, GHSA-29vq-49wr-vm6x"),
    "waitress": ("3.0.1", "CVE-2024-49768 pipelining race, CVE-2024-49769 DoS"),
    "nh3": ("0.3.7", "bundles ammonia 4.1.4: RUSTSEC-2025-0071, -2026-0193, -2026-0213"),
    "tqdm": ("4.66.3", "CVE-2024-34062"),
    "pyyaml": ("5.4", "CVE-2020-14343"),
    "babel": ("2.9.1", "CVE-2021-42771"),
    "wtforms": ("3.0.0", "XSS in widget rendering"),
    "urllib3": ("2.7.0", "CVE-2026-21441, CVE-2026-44431, CVE-2026-44432"),
    "orjson": ("3.9.15", "CVE-2024-27454: recursion in deeply nested input"),
}


def requirements() -> dict[str, Requirement]:
    """The runtime requirements: ``dependencies`` and the ``elasticsearch`` extra, by name."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["elasticsearch"]
    found = [Requirement(text) for text in listed]
    return {canonicalize_name(r.name): r for r in found}


def floor(requirement: Requirement) -> Version | None:
    """The ``>=`` bound of a requirement, if it has one."""
    bounds = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def test_every_runtime_dependency_has_a_floor() -> None:
    missing = [name for name, r in requirements().items() if floor(r) is None]
    assert missing == []


@pytest.mark.parametrize("name", sorted(FIXED_IN))
def test_floor_is_past_the_known_security_fixes(name: str) -> None:
    fixed, advisories = FIXED_IN[name]
    requirement = requirements().get(name)
    assert requirement is not None, f"{name} is not a declared dependency any more"
    lowest = floor(requirement)
    assert lowest is not None and lowest >= Version(fixed), (
        f"pyproject.toml admits {name} {lowest}, below {fixed} ({advisories})"
    )


@pytest.mark.parametrize("name", sorted(requirements()))
def test_installed_version_meets_the_floor(name: str) -> None:
    requirement = requirements()[name]
    try:
        installed = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed; pip install -e '.[test]' (it brings every extra)")
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"{name} {installed} is installed, but the server needs {requirement}; "
        f"pip install -U '{requirement}'"
    )


# CVE-2025-27516: |attr fetched str.format past the sandbox, and the format string then walked
# to any attribute. csrf_token is a page-server global whose module holds the Flask app.
ESCAPE = '{{ "{0.__globals__[current_app].config[SECRET_KEY]}" | attr("format")(csrf_token) }}'
MODULE_SECRET = "module-secret-" + "y" * 20


def helper() -> None:
    """A function handed to a template: its __globals__ are this module's."""


@pytest.mark.parametrize(
    "source",
    [
        '{{ "{0.__globals__[MODULE_SECRET]}" | attr("format")(helper) }}',
        '{{ ("{0.__globals__[MODULE_SECRET]}" | attr("format"))(helper) }}',
        '{{ "{f.__globals__[MODULE_SECRET]}" | attr("format_map")({"f": helper}) }}',
        '{% set f = "{0.__globals__[MODULE_SECRET]}" | attr("format") %}{{ f(helper) }}',
    ],
)
def test_attr_format_escape_is_refused_in_a_bare_sandbox(source: str) -> None:
    env = SandboxedEnvironment(extensions=[CrmExtension], autoescape=True)
    try:
        output = env.from_string(source).render(helper=helper)
    except SecurityError:
        return
    assert MODULE_SECRET not in output


def test_attr_format_escape_does_not_reveal_the_secret_key(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text(ESCAPE)
    secret = "the-secret-key-" + "x" * 20
    app: Any = create_app(site, SECRET_KEY=secret, CRM_COOKIE_SECURE=False)
    try:
        response = app.test_client().get("/")
        assert secret not in response.get_data(as_text=True)
        assert response.status_code == 500
    finally:
        app.extensions["crm"].close()
