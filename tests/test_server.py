"""The page server: routing, static files, sessions and lazy customers, page backends, errors,
configuration and the serve/render/seed commands — a real app over a real SQLite file."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from crm_templates import CrmError
from crm_templates.cli import main
from crm_templates.server import create_app

CRM_YAML = """\
entities:
  - slug: notes
    name: Notes
    fields:
      - {key: text, label: Text, type: text}
      - {key: count, label: Count, type: number}
"""

PAGES: dict[str, str] = {
    "index.html": "home:{{ customer_id or 'none' }}:{{ is_customer }}",
    "about.html": "{% extends 'layout.html' %}{% block body %}about us{% endblock %}",
    "weight/checkin.html": "nested checkin",
    "docs/index.html": "docs index",
    "_partial.html": "partial",
    "read.html": "read:{{ GetCrmField({'slug': 'notes', 'fieldKey': 'text'}) }}",
    "write.html": (
        "{% do SetCrmField({'slug': 'notes', 'fieldKey': 'text', 'value': 'hello'}) %}"
        "written:{{ GetCrmField({'slug': 'notes', 'fieldKey': 'text'}) }}"
    ),
    "info.html": (
        "path={{ request.path }} method={{ request.method }} q={{ query.q }} "
        "arg={{ request.args.q }} environ={{ request.environ is defined }}"
    ),
    "counter.html": "count={{ GetCrmField({'slug': 'notes', 'fieldKey': 'count'}) }}",
    "counter.py": """
        def handle(request, page):
            if request.method == "POST":
                current = page.GetCrmField({"slug": "notes", "fieldKey": "count"}) or 0
                page.SetCrmField({"slug": "notes", "fieldKey": "count", "value": current + 1})
                return page.redirect("/counter")
        """,
    "vars.html": "hello {{ var.name }} / {{ var.items | join(',') }}",
    "vars.py": """
        def handle(request, page):
            page.set_variable("name", request.args.get("name", "world"))
            page.set_variable("items", [1, 2, 3])
        """,
    "api/echo.py": """
        def handle(request, page):
            return page.json({"data": page.data, "customer": page.customer_id,
                              "method": request.method}, status=201)
        """,
    "api/save.py": """
        def handle(request, page):
            result = page.crm.set_field(slug="notes", field_key="text", value=page.data["text"])
            page.json({"ok": result["ok"], "customer": page.customer_id})
        """,
    "go.py": """
        def handle(request, page):
            return page.redirect(request.args.get("to", "/about"))
        """,
    "boom.html": "never rendered",
    "boom.py": """
        def handle(request, page):
            raise RuntimeError("secret internal detail")
        """,
    "missing.py": """
        def handle(request, page):
            return None
        """,
    "gone.py": """
        def handle(request, page):
            page.abort(404, "That thing is gone.")
        """,
    "bad-slug.html": "x{{ GetCrmField({'slug': 'nope', 'fieldKey': 'a'}) }}y",
}


def make_site(root: Path, pages: dict[str, str] = PAGES, schema: str | None = CRM_YAML) -> Path:
    """Write a small site: pages, a layout, a stylesheet and crm.yaml."""
    for name, text in pages.items():
        path = root / "pages" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    (root / "templates").mkdir(exist_ok=True)
    (root / "templates" / "layout.html").write_text("<body>{% block body %}{% endblock %}</body>")
    (root / "static").mkdir(exist_ok=True)
    (root / "static" / "app.css").write_text("body { color: #222; }")
    if schema is not None:
        (root / "crm.yaml").write_text(schema)
    return root


def csrf_token(html: str) -> str:
    """The CSRF token of the first form in ``html``."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A small test site in tmp_path."""
    return make_site(tmp_path / "site")


@pytest.fixture
def app(site: Path) -> Iterator[Any]:
    """The app over the test site, its store a real SQLite file in the instance folder."""
    application = create_app(site, TESTING=True, CRM_SEED=False)
    yield application
    application.extensions["crm"].close()


@pytest.fixture
def client(app: Any) -> Any:
    """Flask's test client."""
    return app.test_client()


def token_for(client: Any) -> str:
    """A CSRF token for the client's session (from the sign-in form)."""
    return csrf_token(client.get("/auth/sign-in").get_data(as_text=True))


def customers(app: Any) -> list[Any]:
    """Every customer in the app's store."""
    return app.extensions["crm"].crm.store.list_customers(limit=1000)


# --- routing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "body"),
    [
        ("/", "home:none:False"),
        ("/about", "<body>about us</body>"),
        ("/weight/checkin", "nested checkin"),
        ("/docs/", "docs index"),
    ],
)
def test_pages_are_served_at_their_paths(client: Any, url: str, body: str) -> None:
    response = client.get(url)
    assert response.status_code == 200
    assert response.get_data(as_text=True) == body
    assert response.mimetype == "text/html"


def test_directory_without_slash_redirects_to_its_index(client: Any) -> None:
    response = client.get("/docs")
    assert response.status_code == 308
    assert response.headers["Location"] == "/docs/"


@pytest.mark.parametrize(
    "url",
    [
        "/nope",
        "/_partial",
        "/about.html",
        "/index",
        "/counter.py",
        "/weight",
        "/weight/checkin/",
        "/layout",
        "/templates/layout.html",
        "/pages/index.html",
    ],
)
def test_unknown_partial_and_source_urls_are_404(client: Any, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 404
    assert "There is no page at this address" in response.get_data(as_text=True)


def test_404_is_json_for_json_clients(client: Any) -> None:
    response = client.get("/nope", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_static_files_are_served(client: Any) -> None:
    response = client.get("/static/app.css")
    assert response.status_code == 200
    assert b"color: #222" in response.data
    assert client.get("/static/nope.css").status_code == 404
    # The server's own stylesheet (sign-in pages, preview banner).
    assert client.get("/_crm/static/crm.css").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/../crm.yaml",
        "/%2e%2e/crm.yaml",
        "/static/../crm.yaml",
        "/static/%2e%2e/crm.yaml",
        "/static/..%2fcrm.yaml",
        "/static/..%5ccrm.yaml",
        "/static/%2e%2e%2finstance%2fsecret_key",
        "/weight/../../crm.yaml",
        "/..%2f..%2fetc%2fpasswd",
        "/static//etc/passwd",
        "/instance/secret_key",
        "/crm",
        "/crm.yaml",
        "/counter.py",
        "/%5c..%5ccrm.yaml",
    ],
)
def test_path_traversal_reaches_nothing(client: Any, site: Path, url: str) -> None:
    response = client.get(url)
    assert response.status_code in (404, 308), url
    body = response.get_data(as_text=True)
    assert "entities:" not in body
    assert "root:" not in body
    secret = (site / "instance" / "secret_key").read_text()
    assert secret not in body


def test_new_pages_appear_without_restart_in_debug(site: Path) -> None:
    app = create_app(site, DEBUG=True, CRM_SEED=False)
    try:
        client = app.test_client()
        assert client.get("/later").status_code == 404
        (site / "pages" / "later.html").write_text("now here")
        assert client.get("/later").get_data(as_text=True) == "now here"
    finally:
        app.extensions["crm"].close()


# --- sessions and the lazy customer ---------------------------------------------------------


def test_pure_reads_create_no_customer(app: Any, client: Any) -> None:
    for url in ("/", "/read", "/counter", "/info"):
        assert client.get(url).status_code == 200
    assert customers(app) == []
    with client.session_transaction() as session:
        assert "customer_id" not in session


def test_first_write_creates_one_anonymous_customer(app: Any, client: Any) -> None:
    assert client.get("/write").get_data(as_text=True) == "written:hello"
    [customer] = customers(app)
    assert customer.email is None
    with client.session_transaction() as session:
        assert session["customer_id"] == customer.id
    # The session keeps the same customer on later writes and shows it to templates.
    client.get("/write")
    assert len(customers(app)) == 1
    assert client.get("/").get_data(as_text=True) == f"home:{customer.id}:False"


def test_each_visitor_gets_their_own_customer(app: Any) -> None:
    first, second = app.test_client(), app.test_client()
    first.get("/write")
    second.get("/write")
    assert len({c.id for c in customers(app)}) == 2
    assert second.get("/read").get_data(as_text=True) == "read:hello"
    assert app.test_client().get("/read").get_data(as_text=True) == "read:"


def test_stale_customer_in_session_starts_over(app: Any, client: Any) -> None:
    with client.session_transaction() as session:
        session["customer_id"] = "cus_does_not_exist"
    assert client.get("/").get_data(as_text=True) == "home:none:False"
    with client.session_transaction() as session:
        assert "customer_id" not in session


def test_templates_see_a_read_only_request_view(client: Any) -> None:
    body = client.get("/info?q=needle").get_data(as_text=True)
    assert body == "path=/info method=GET q=needle arg=needle environ=False"


def test_sessions_survive_a_restart(site: Path) -> None:
    first = create_app(site, TESTING=True, CRM_SEED=False)
    client = first.test_client()
    client.get("/write")
    cid = first.extensions["crm"].crm.store.list_customers()[0].id
    first.extensions["crm"].close()
    key_file = site / "instance" / "secret_key"
    assert key_file.stat().st_mode & 0o077 == 0  # only the owner can read it
    second = create_app(site, TESTING=True, CRM_SEED=False)
    try:
        # The same cookie jar against the new app: same secret key, same customer.
        assert client.application is first
        cookie = client.get_cookie("crm_session")
        assert cookie is not None
        again = second.test_client()
        again.set_cookie("crm_session", cookie.value)
        assert again.get("/").get_data(as_text=True) == f"home:{cid}:False"
    finally:
        second.extensions["crm"].close()


def test_secret_key_from_config_is_used(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_SECRET_KEY", "from-the-environment")
    app = create_app(site, TESTING=True, CRM_SEED=False)
    try:
        assert app.secret_key == "from-the-environment"
        assert not (site / "instance" / "secret_key").exists()
    finally:
        app.extensions["crm"].close()


def test_default_store_is_sqlite_in_the_instance_folder(app: Any, site: Path) -> None:
    assert (site / "instance" / "crm.db").exists()
    assert app.config["CRM_SITE_DIR"] == str(site.resolve())


def test_store_url_argument_overrides(site: Path, tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.db"
    app = create_app(site, f"sqlite:///{db}", TESTING=True, CRM_SEED=False)
    try:
        app.test_client().get("/write")
        assert db.exists()
        assert app.config["CRM_STORE_URL"] == f"sqlite:///{db}"
    finally:
        app.extensions["crm"].close()


def test_test_config_mapping_is_accepted(site: Path) -> None:
    app = create_app(site, test_config={"TESTING": True, "CRM_MAX_BODY": 1234, "CRM_SEED": False})
    try:
        assert app.testing and app.config["MAX_CONTENT_LENGTH"] == 1234
    finally:
        app.extensions["crm"].close()


# --- page backends --------------------------------------------------------------------------


def test_backend_post_writes_and_redirects(app: Any, client: Any) -> None:
    token = csrf_token(client.get("/auth/sign-in").get_data(as_text=True))
    for _ in range(3):
        response = client.post("/counter", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["Location"] == "/counter"
    assert client.get("/counter").get_data(as_text=True) == "count=3.0"
    assert len(customers(app)) == 1


def test_backend_sets_template_variables(client: Any) -> None:
    assert client.get("/vars?name=<b>").get_data(as_text=True) == "hello &lt;b&gt; / 1,2,3"


def test_backend_answers_json_for_json_and_form_bodies(client: Any) -> None:
    response = client.post("/api/echo", json={"a": [1, 2]}, headers={"Origin": "http://localhost"})
    assert response.status_code == 201
    assert response.get_json() == {"data": {"a": [1, 2]}, "customer": None, "method": "POST"}
    token = token_for(client)
    response = client.post("/api/echo", data={"csrf_token": token, "x": "1"})
    assert response.get_json()["data"] == {"csrf_token": token, "x": "1"}
    assert client.get("/api/echo").get_json()["method"] == "GET"


def test_backend_writes_through_the_snake_case_service(app: Any, client: Any) -> None:
    response = client.post(
        "/api/save", json={"text": "via json"}, headers={"Origin": "http://localhost"}
    )
    body = response.get_json()
    assert body["ok"] is True
    assert body["customer"] == customers(app)[0].id
    assert client.get("/read").get_data(as_text=True) == "read:via json"


def test_redirects_stay_on_this_site(client: Any) -> None:
    assert client.get("/go?to=/about").headers["Location"] == "/about"
    assert client.get("/go?to=http://localhost/about").status_code == 302
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"):
        response = client.get("/go", query_string={"to": target})
        assert response.status_code == 500, target
        assert "evil" not in response.headers.get("Location", "")


def test_backend_exception_is_a_500_without_details(client: Any, caplog: Any) -> None:
    response = client.get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "Something went wrong" in body
    assert "secret internal detail" not in body
    assert "secret internal detail" in caplog.text  # logged for the operator


def test_backend_exception_details_in_debug(site: Path) -> None:
    app = create_app(site, DEBUG=True, CRM_SEED=False)
    try:
        body = app.test_client().get("/boom").get_data(as_text=True)
        assert "RuntimeError: secret internal detail" in body
    finally:
        app.extensions["crm"].close()


def test_backend_without_answer_or_template_is_a_500(client: Any) -> None:
    assert client.get("/missing").status_code == 500


def test_backend_abort_renders_the_error_page(client: Any) -> None:
    response = client.get("/gone")
    assert response.status_code == 404
    assert "That thing is gone." in response.get_data(as_text=True)


def test_post_to_a_page_without_backend_is_405(client: Any) -> None:
    token = token_for(client)
    response = client.post("/about", data={"csrf_token": token})
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert client.put("/counter", data={"csrf_token": token}).status_code == 405


def test_backends_reload_in_debug(site: Path) -> None:
    app = create_app(site, DEBUG=True, CRM_SEED=False)
    try:
        client = app.test_client()
        assert client.get("/vars").get_data(as_text=True) == "hello world / 1,2,3"
        backend = site / "pages" / "vars.py"
        backend.write_text(
            "def handle(request, page):\n    page.set_variable('name', 'reloaded')\n"
            "    page.set_variable('items', [])\n"
        )
        import os

        stat = backend.stat()
        os.utime(backend, (stat.st_atime, stat.st_mtime + 5))
        assert client.get("/vars").get_data(as_text=True) == "hello reloaded / "
    finally:
        app.extensions["crm"].close()


# --- error policy and schema ----------------------------------------------------------------


def test_crm_errors_raise_in_testing(site: Path) -> None:
    app = create_app(site, TESTING=True, CRM_SEED=False, PROPAGATE_EXCEPTIONS=False)
    try:
        assert app.config["CRM_ON_ERROR"] == "raise"
        assert app.test_client().get("/bad-slug").status_code == 500
    finally:
        app.extensions["crm"].close()


def test_crm_errors_are_logged_in_production(site: Path, caplog: Any) -> None:
    app = create_app(site, CRM_SEED=False)
    try:
        assert app.config["CRM_ON_ERROR"] == "log"
        response = app.test_client().get("/bad-slug")
        assert response.status_code == 200
        assert response.get_data(as_text=True) == "xNoney" or "nope" in caplog.text
        assert "nope" in caplog.text
    finally:
        app.extensions["crm"].close()


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        # Issue 11, item 4: file:line:column: path in the document: what is expected.
        (
            CRM_YAML.replace("type: number", "type: numbr"),
            ["crm.yaml:6:42: entities[0].fields[1].type:", "numbr", "Did you mean 'number'?"],
        ),
        (
            CRM_YAML.replace("key: count", "key: 'bad key!'"),
            ["crm.yaml:6:15: entities[0].fields[1].key:", "bad key!"],
        ),
        ("entities: [\n", ["crm.yaml:2:1:", "YAML"]),
        ("entities: 3\n", ["crm.yaml:1:11: entities:", "expected a list of entity definitions"]),
    ],
)
def test_schema_errors_name_the_file_and_key(
    tmp_path: Path, schema: str, expected: list[str]
) -> None:
    site = make_site(tmp_path / "site", {"index.html": "x"}, schema)
    with pytest.raises(CrmError) as info:
        create_app(site, TESTING=True)
    for part in expected:
        assert part in str(info.value)


def test_site_without_pages_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CrmError, match="pages/"):
        create_app(tmp_path / "empty", TESTING=True)


def test_schema_json_is_accepted(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {"index.html": "{{ 'notes' | crm_label('text') }}"}, None)
    (site / "crm.json").write_text(
        json.dumps({"entities": [{"slug": "notes", "fields": [{"key": "text", "label": "T"}]}]})
    )
    app = create_app(site, TESTING=True)
    try:
        assert app.test_client().get("/").get_data(as_text=True) == "T"
    finally:
        app.extensions["crm"].close()


def test_on_error_setting_is_validated(site: Path) -> None:
    with pytest.raises(ValueError, match="CRM_ON_ERROR"):
        create_app(site, CRM_ON_ERROR="ignore")


# --- commands -------------------------------------------------------------------------------


def test_render_command_prints_a_page_as_a_customer(site: Path) -> None:
    app = create_app(site, TESTING=True, CRM_SEED=False)
    client = app.test_client()
    client.get("/write")
    cid = customers(app)[0].id
    app.extensions["crm"].close()
    runner = CliRunner()
    for page in ("/read", "read.html", "pages/read.html"):
        result = runner.invoke(main, ["render", page, "--site", str(site), "--customer", cid])
        assert result.exit_code == 0, result.output
        assert result.output == "read:hello"
    index = runner.invoke(main, ["render", "index.html", "--site", str(site), "--customer", cid])
    assert index.output == f"home:{cid}:False"


def test_render_command_never_writes(site: Path) -> None:
    app = create_app(site, TESTING=True, CRM_SEED=False)
    app.test_client().get("/read")
    crm = app.extensions["crm"].crm
    customer = crm.create_customer("reader@example.com")
    app.extensions["crm"].close()
    result = CliRunner().invoke(
        main, ["render", "/write", "--site", str(site), "--customer", customer.id]
    )
    assert result.exit_code == 0, result.output
    assert result.output == "written:"  # the write was refused: preview, read-only


def test_render_command_reports_unknown_pages_and_customers(site: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["render", "/", "--site", str(site), "--customer", "x"])
    assert result.exit_code == 1  # never served: no store to read, and none is created
    assert "there is no store at" in result.output
    assert not (site / "instance" / "crm.db").exists()
    create_app(site, TESTING=True, CRM_SEED=False).extensions["crm"].close()
    result = runner.invoke(main, ["render", "/nope", "--site", str(site), "--customer", "x"])
    assert result.exit_code == 1
    assert "no page at '/nope'" in result.output
    result = runner.invoke(main, ["render", "/", "--site", str(site), "--customer", "cus_x"])
    assert result.exit_code == 1
    assert "no customer 'cus_x'" in result.output


def test_seed_command_loads_once(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {"index.html": "x"})
    (site / "seed.yaml").write_text(
        "customers:\n  - {key: ann, email: ann@example.com}\n"
        "entries:\n  - {entity: notes, customer: ann, values: {text: hi, count: 2}}\n"
        "  - {entity: notes, reference: {type: site, id: catalog}, values: {text: shared}}\n"
    )
    db = tmp_path / "seed.db"
    runner = CliRunner()
    result = runner.invoke(main, ["seed", str(site), "--store", f"sqlite:///{db}"])
    assert result.exit_code == 0, result.output
    assert "Seeded 1 customers and 2 entries" in result.output
    again = runner.invoke(main, ["seed", str(site), "--store", f"sqlite:///{db}"])
    assert "nothing seeded" in again.output
    forced = runner.invoke(main, ["seed", str(site), "--store", f"sqlite:///{db}", "--force"])
    assert "Seeded 1 customers and 2 entries" in forced.output


def test_seed_errors_name_the_entry(tmp_path: Path) -> None:
    site = make_site(tmp_path / "site", {"index.html": "x"})
    (site / "seed.yaml").write_text("entries:\n  - {entity: notes, values: {text: hi}}\n")
    result = CliRunner().invoke(main, ["seed", str(site), "--store", "sqlite:///:memory:"])
    assert result.exit_code == 1
    assert "entries[0]" in result.output and "reference" in result.output


def test_empty_store_is_seeded_on_first_start(tmp_path: Path) -> None:
    site = make_site(
        tmp_path / "site",
        {
            "index.html": "{{ GetCrmEntries({'slug': 'notes', "
            "'referenceType': 'site', 'referenceId': 'c'}) | length }}"
        },
    )
    (site / "seed.yaml").write_text(
        "entries:\n  - {entity: notes, reference: {type: site, id: c}, values: {text: a}}\n"
    )
    for _ in range(2):  # the second start finds data and does not seed again
        app = create_app(site, TESTING=True)
        try:
            assert app.test_client().get("/").get_data(as_text=True) == "1"
        finally:
            app.extensions["crm"].close()


def test_serve_command_help_lists_the_options() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--store", "--host", "--port", "--threads", "--debug"):
        assert option in result.output
