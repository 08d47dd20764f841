"""The documentation (issue 11, item 9): the MkDocs site builds strictly without the network,
the README's example runs and its links resolve, every README heading of before the move has a
home in docs/, and the getting-started tutorial works step by step against a real
`crm-templates serve` process, built from the files the tutorial page shows."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from crm_templates.documents import schema_text
from crm_templates.functions import FUNCTIONS
from tests.test_serve import LINK_LINE, Served, browser_session

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
TUTORIAL = DOCS / "tutorial" / "build-a-site.md"
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)(?P<attrs>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


def code_blocks(path: Path) -> list[tuple[str, str, str]]:
    """``(language, attributes, body)`` of every fenced block in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [(m["lang"], m["attrs"].strip(), m["body"]) for m in FENCE.finditer(text)]


# ------------------------------------------------------------------------------ the site


@pytest.mark.slow
def test_docs_build_strictly_without_the_network(tmp_path: Path) -> None:
    """`mkdocs build --strict` (as .ci/run runs it): every nav entry, link and anchor resolves,
    mkdocstrings and mkdocs-click raise no warning; the pages load nothing from other hosts."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 40, pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        # Scripts, stylesheets, fonts and images come from the site itself (links may leave).
        external = re.findall(r'<(?:script|img|link)\b[^>]*(?:src|href)="(?:https?:)?//', html)
        assert not [
            tag
            for tag in external
            if 'rel="stylesheet"' in tag or "<script" in tag or "<img" in tag
        ], (page, external)
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page
    # The API pages come from the docstrings, the CLI page from the click commands.
    api = (site / "reference" / "api" / "service" / "index.html").read_text(encoding="utf-8")
    assert 'id="crm_templates.service.Crm.set_fields"' in api
    # The options table is generated from the function table (tools/docs_hooks.py).
    options = (site / "reference" / "options" / "index.html").read_text(encoding="utf-8")
    for spec in FUNCTIONS.values():
        assert f"{spec.name} / <code>{spec.camel_name}</code>" in options, spec.name
    assert "generated:" not in options
    # The key reference of crm.yaml and seed.yaml is generated from the shipped JSON Schemas.
    keys = (site / "reference" / "schema-files" / "index.html").read_text(encoding="utf-8")
    assert "generated:" not in keys
    for name in ("crm", "seed"):
        for part in json.loads(schema_text(name))["$defs"].values():
            for key in part.get("properties", ()):
                assert f"<code>{key}</code>" in keys, (name, key)
    cli = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("serve", "render", "seed", "ensure", "entries", "lint", "migrate", "schema"):
        assert f'id="crm-templates-{command}"' in cli, command


# ------------------------------------------------------------------------------ the README


def test_readme_keeps_the_two_commands_and_links_into_the_docs() -> None:
    text = README.read_text(encoding="utf-8")
    assert "pip install -e . && crm-templates serve sample_sites/weight_tracker" in text
    assert "pip install -e '.[test]' && pytest" in text
    links = re.findall(r"\]\(((?:docs/)[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) >= 30, links
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []
    # Every page of the site is reachable from the README.
    pages = {p.relative_to(ROOT).as_posix() for p in DOCS.rglob("*.md")}
    expected = {p for p in pages if "/api/" not in p or p.endswith("/api/index.md")}
    assert sorted(expected - set(links)) == []
    assert len(text) < 8_000, "the README is an entry point; details belong in docs/"


def test_readme_example_runs_and_prints_what_it_says(capsys: pytest.CaptureFixture[str]) -> None:
    [(_, _, code)] = [b for b in code_blocks(README) if b[0] == "python"]
    promised = re.search(r"^# (Hello .*)$", code, re.M)
    assert promised
    exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert capsys.readouterr().out == promised[1] + "\n"


# Where each heading of the README before the move (issue 11, item 9) lives now: the page and
# the heading there. A page that loses one of these headings loses the section's content.
HOMES: dict[str, tuple[str, str]] = {
    "# crm-templates": ("index.md", "# crm-templates"),
    "## The two commands": ("index.md", "## The two commands"),
    "## Quickstart": ("tutorial/quickstart.md", "# Try the sample site"),
    "## Python quick start": ("how-to/python.md", "# Use the CRM from Python"),
    "## Functions": ("reference/functions.md", "# Functions"),
    "### Entity presets": ("reference/entities.md", "## Entity presets"),
    "### Colours of entities and stages": (
        "reference/entities.md",
        "## Colours of entities and stages",
    ),
    "### Field definitions: `validation_rules`, `visible_to_team_ids`": (
        "reference/entities.md",
        "## Field definitions: `validation_rules`, `visible_to_team_ids`",
    ),
    "## Field types": ("reference/field-types.md", "# Field types and values"),
    "### Values": ("reference/field-types.md", "## Values"),
    "## Errors": ("reference/errors.md", "# Errors"),
    "## Storage and async writes": ("explanation/consistency.md", "## Async writes"),
    "## Command line": ("reference/cli.md", "# Command line"),
    "## Templates (the Jinja2 extension)": ("reference/extension.md", "# The Jinja2 extension"),
    "### Calling styles": ("reference/options.md", "## Calling styles in templates"),
    "### Functions (templates)": ("reference/functions.md", "## In templates"),
    "### Filters": ("reference/filters.md", "# Filters"),
    "### Errors (templates)": ("reference/errors.md", "## In templates"),
    "### Sandbox": ("explanation/security.md", "## Template sandbox"),
    "### Per-render cache": ("explanation/consistency.md", "## Per-render cache"),
    "### Misspelt names": ("reference/extension.md", "## Misspelt names"),
    "## Rendering field values": ("reference/renderers.md", "# Renderers"),
    "### The registry": ("reference/renderers.md", "## The registry"),
    "### Safety guarantees": ("reference/renderers.md", "## Safety guarantees"),
    "### The XSS suite": ("reference/renderers.md", "## The XSS suite"),
    "## The page server": ("reference/site.md", "# Site directory"),
    "### Sample sites": ("tutorial/quickstart.md", "## The sample sites"),
    "### Writing a page": ("how-to/write-a-page.md", "# Write a page"),
    "### Page backends: `handle(request, page)`": (
        "how-to/page-backends.md",
        "# Page backends: `handle(request, page)`",
    ),
    "#### Request bodies": ("how-to/page-backends.md", "## Request bodies"),
    "### Forms and CSRF": ("how-to/forms-and-csrf.md", "# Forms and CSRF"),
    "### Sign-in (email magic link)": (
        "how-to/sign-in.md",
        "# Sign customers in (email magic link)",
    ),
    "### Operators and previews": ("how-to/operators-and-preview.md", "# Operators and previews"),
    "### Configuration": ("reference/config.md", "# Configuration"),
    "### Logs": ("reference/logs.md", "# Logs"),
    "### Security": ("explanation/security.md", "# Security model"),
    "## Elasticsearch / OpenSearch backend": (
        "how-to/search-backend.md",
        "# Use the Elasticsearch / OpenSearch backend",
    ),
    "### Index layout": ("reference/stores.md", "## Index layout"),
    "### Consistency": ("explanation/consistency.md", "## The search backend"),
    "### Moving data between stores": ("how-to/migrate.md", "# Move data between stores"),
    "## Benchmarks": ("explanation/benchmarks.md", "# Benchmarks"),
    "## Development": ("explanation/testing.md", "## Run the tests"),
    "### Tests that bite": ("explanation/testing.md", "## Tests that bite"),
    "### Mutation testing": ("explanation/testing.md", "## Mutation testing"),
    "#### Scores": ("explanation/testing.md", "### Scores"),
    "#### Not yet run": ("explanation/testing.md", "### In CI"),  # all of it has run since
    "### Testing and CI": ("explanation/testing.md", "## Testing and CI"),
}


@pytest.mark.parametrize("old", sorted(HOMES))
def test_every_former_readme_section_has_a_home(old: str) -> None:
    page, heading = HOMES[old]
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith(heading)], f"{old} → {page}: {heading}"


# ------------------------------------------------------------------------------ the tutorial


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`crm-templates ARGS` from this checkout, in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "crm_templates", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def tutorial_commands() -> list[str]:
    """Every command line of the tutorial's shell blocks, in order."""
    lines = [
        line.strip()
        for lang, _, body in code_blocks(TUTORIAL)
        if lang == "sh"
        for line in body.splitlines()
    ]
    return [line for line in lines if line and not line.startswith("#")]


def form_post(client: Any, url: str, html: str, **fields: str) -> tuple[int, str, str]:
    """POST a form as a browser does, with the CSRF token from ``html``: status, Location, body."""
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token, html
    body = urlencode({"csrf_token": token[1], **fields}).encode()
    try:
        with client.open(url, body, timeout=10) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", ""), exc.read().decode()


def get(client: Any, url: str) -> tuple[int, str]:
    try:
        with client.open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.slow
def test_the_getting_started_tutorial_works_step_by_step(tmp_path: Path) -> None:
    """Build the tutorial's site from the page's own code blocks and do what each step says."""
    # Steps 1-4: the files, exactly as shown.
    titled = [
        (re.search(r'title="([^"]+)"', attrs), body) for _, attrs, body in code_blocks(TUTORIAL)
    ]
    files = {m[1]: body for m, body in titled if m}
    assert sorted(files) == [
        "my_site/crm.yaml",
        "my_site/pages/index.html",
        "my_site/pages/index.py",
        "my_site/templates/layout.html",
    ]
    for name, body in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body, encoding="utf-8")
    site = tmp_path / "my_site"
    commands = tutorial_commands()
    text = TUTORIAL.read_text(encoding="utf-8")

    # Step 5: lint passes, and the misspelling the page shows is reported as the page says.
    [lint] = [c for c in commands if c.startswith("crm-templates lint ")]
    done = run_cli(shlex.split(lint)[1:], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 template(s) OK" in done.stdout + done.stderr
    page = site / "pages" / "index.html"
    good = page.read_text(encoding="utf-8")
    page.write_text(good.replace("fieldKey='name'", "fieldKey='nme'", 1), encoding="utf-8")
    done = run_cli(shlex.split(lint)[1:], tmp_path)
    assert done.returncode == 1
    [reported] = [line for line in done.stdout.splitlines() if "nme" in line]
    assert f"`{reported}`" in text, reported
    page.write_text(good, encoding="utf-8")

    # Step 6: serve; the page reads, the backend writes, a bad value comes back with 422.
    assert "crm-templates serve my_site" in commands
    served = Served(site, None)
    try:
        ann = browser_session()
        status, html = get(ann, served.url("/"))
        assert status == 200 and "Hello!" in html and "Tell us about yourself." in html
        status, location, _ = form_post(
            ann, served.url("/"), html, name="Ann", favourite_book="Middlemarch", newsletter="yes"
        )
        assert (status, location) == (303, "/")
        status, html = get(ann, served.url("/"))
        assert "Hello, Ann!" in html
        assert '<span class="crm-field crm-text">Middlemarch</span>' in html
        assert 'aria-label="Yes"' in html and " checked>" in html
        status, _, body = form_post(ann, served.url("/"), html, name="  ", favourite_book="x")
        assert status == 422 and "Please enter your name." in body
        assert "Hello, Ann!" in get(ann, served.url("/"))[1]
        # Another visitor sees none of Ann's answers.
        bob = browser_session()
        _, other = get(bob, served.url("/"))
        assert "Hello!" in other and "Ann" not in other and "Middlemarch" not in other

        # Step 7: sign in with the link from the log; the answers come along.
        status, html = get(ann, served.url("/auth/sign-in?next=/"))
        assert status == 200
        assert form_post(ann, served.url("/auth/sign-in"), html, email="you@example.com")[0] == 200
        [link] = [m for m in map(LINK_LINE.match, served.wait_for(LINK_LINE)) if m]
        assert link["email"] == "you@example.com"
        status, html = get(ann, link["link"])
        assert status == 200 and "Sign in as you@example.com" in html
        confirm = re.search(r'name="token" value="([^"]+)"', html)
        assert confirm
        status, location, _ = form_post(
            ann, served.url("/auth/verify"), html, token=confirm[1], next="/"
        )
        assert status == 303
        _, html = get(ann, served.url("/"))
        assert "Sign out you@example.com" in html and "Hello, Ann!" in html
    finally:
        served.stop()

    # Step 8: an operator previews the page as that customer; the preview writes nothing.
    [with_password] = [c for c in commands if c.startswith("CRM_OPERATOR_PASSWORD=")]
    assignment, serve = with_password.split(" ", 1)
    password = shlex.split(assignment.split("=", 1)[1])[0]
    assert serve == "crm-templates serve my_site"
    served = Served(site, None, env={"CRM_OPERATOR_PASSWORD": password})
    try:
        op = browser_session()
        _, html = get(op, served.url("/operator/sign-in"))
        status, _, _ = form_post(op, served.url("/operator/sign-in"), html, password=password)
        assert status in (302, 303)
        # The old customers page /operator/ leads to the admin's (issue 12).
        assert get(op, served.url("/operator/"))[0] == 302
        status, html = get(op, served.url("/admin/customers"))
        assert status == 200
        ids = re.findall(r"preview_customer=([\w%-]+)", html)
        previews = {cid: get(op, served.url(f"/?preview_customer={cid}"))[1] for cid in ids}
        [(customer_id, html)] = [(c, h) for c, h in previews.items() if "you@example.com" in h]
        assert "Preview as" in html and "Hello, Ann!" in html
        status, _, body = form_post(op, served.url("/"), html, name="Mallory")
        assert status == 403 and "Previews are read-only" in body
        leave = re.search(r'<form method="post" action="([^"]*preview/leave)"', html)
        assert leave
        status, _, _ = form_post(op, served.url(leave[1]), html, next="/")
        assert status in (302, 303)
        _, html = get(op, served.url("/"))
        assert "Preview as" not in html and "Hello!" in html
    finally:
        served.stop()

    # From a terminal: render and entries, with the customer's id.
    [render] = [c for c in commands if c.startswith("crm-templates render ")]
    done = run_cli(shlex.split(render.replace("CUSTOMER_ID", customer_id))[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Hello, Ann!" in done.stdout and "Middlemarch" in done.stdout
    [entries] = [c for c in commands if c.startswith("crm-templates entries ")]
    done = run_cli(shlex.split(entries.replace("CUSTOMER_ID", customer_id))[1:], tmp_path)
    assert done.returncode == 0, done.stderr
    assert '"name": "Ann"' in done.stdout and '"favourite_book": "Middlemarch"' in done.stdout
    # Nothing the preview tried was written.
    assert "Mallory" not in done.stdout
