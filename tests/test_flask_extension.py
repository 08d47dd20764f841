"""`crm_templates.flask.CrmTemplates` in a plain Flask app (issue 11, item 1).

The app (tests/flask_demo) uses Flask-Login and a blueprint with its own templates; the
templates read and write for the logged-in user. Two customers, logged in alternately and in
interleaved threads, never see each other's data; a macro imported without context reads for
the render's customer; two apps from one factory keep their stores apart; closing (and
interpreter exit) drains queued async writes into the SQLite file; ``flask crm`` runs through
Flask's CliRunner and as a real process; the page server is built on the extension.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from jinja2 import DictLoader
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from crm_templates import Crm, CrmError, CrmUsageError, MissingOptionError, open_store
from crm_templates.extension import CrmTemplateError
from crm_templates.flask import EXTENSION_KEY, CrmState, CrmTemplates
from tests.flask_demo import SCHEMA, create_app
from tests.flask_demo import crm as demo_crm

ROOT = Path(__file__).resolve().parent.parent


def make_app(tmp_path: Path, name: str = "crm.db", **config: Any) -> Flask:
    settings = {"TESTING": True, "CRM_STORE_URL": f"sqlite:///{tmp_path / name}", **config}
    app = create_app(settings)
    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = make_app(tmp_path)
    yield app
    demo_crm.close(app)


def shown(html: str, ident: str) -> str:
    match = re.search(rf'<p id="{ident}">(.*?)</p>', html, re.S)
    assert match is not None, f"no #{ident} in {html!r}"
    return match.group(1).strip()


def logged_in(app: Flask, user_id: str) -> FlaskClient:
    client = app.test_client()
    assert client.get(f"/account/login/{user_id}").status_code == 302
    return client


def post_weight(client: FlaskClient, kg: Any, note: str) -> str:
    response = client.post("/account/weight", data={"kg": str(kg), "note": note})
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert shown(html, "saved") == "saved"
    return html


def stored(store_url: str, customer: str) -> dict[str, Any]:
    """The newest kg and note of ``customer`` straight from a new handle on the store."""
    with Crm(open_store(store_url)) as crm:
        return dict(crm.store.latest_values("weight", "customer", customer, ["kg", "note"]))


# --- reading and writing for the logged-in user -----------------------------------------------


def test_templates_read_and_write_for_the_logged_in_user(app: Flask) -> None:
    alice, bob = logged_in(app, "1"), logged_in(app, "2")
    html = post_weight(alice, 70.5, "alice's note")
    assert (shown(html, "user"), shown(html, "kg"), shown(html, "note")) == (
        "Alice",
        "70.5",
        "alice&#39;s note",
    )
    assert "70.5" in shown(html, "rendered")  # the crm_render filter, formatted for CRM_LOCALE
    # Bob has nothing yet: empty defaults, not Alice's values.
    html = bob.get("/account/weight").get_data(as_text=True)
    assert (shown(html, "user"), shown(html, "kg"), shown(html, "note")) == ("Bob", "", "")
    post_weight(bob, 90, "bob's note")
    # Alternately, several rounds: each sees only their own newest values.
    for round_ in range(3):
        post_weight(alice, 60 + round_, f"a{round_}")
        post_weight(bob, 80 + round_, f"b{round_}")
        a = alice.get("/account/weight").get_data(as_text=True)
        b = bob.get("/account/weight").get_data(as_text=True)
        assert (shown(a, "kg"), shown(a, "note")) == (f"{60 + round_}.0", f"a{round_}")
        assert (shown(b, "kg"), shown(b, "note")) == (f"{80 + round_}.0", f"b{round_}")
    # The writes went to the customers named by Flask-Login's user ids.
    url = app.config["CRM_STORE_URL"]
    assert stored(url, "1") == {"kg": 62.0, "note": "a2"}
    assert stored(url, "2") == {"kg": 82.0, "note": "b2"}


def test_two_customers_in_interleaved_threads_never_see_each_other(app: Flask) -> None:
    rounds, per_customer = 15, 3
    barrier = threading.Barrier(2 * per_customer)
    problems: list[str] = []

    def visit(user_id: str, worker: int) -> None:
        client = logged_in(app, user_id)
        barrier.wait()
        for i in range(rounds):
            note = f"u{user_id}-w{worker}-{i}"
            html = post_weight(client, 1, note)
            # Another thread of the same customer may have written since: the note shown must
            # be this customer's, whichever of their threads wrote it.
            for page in (html, client.get("/account/weight").get_data(as_text=True)):
                seen = shown(page, "note")
                if not seen.startswith(f"u{user_id}-"):
                    problems.append(f"user {user_id} saw {seen!r}")

    threads = [
        threading.Thread(target=visit, args=(uid, w))
        for w in range(per_customer)
        for uid in ("1", "2")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []
    assert stored(app.config["CRM_STORE_URL"], "1")["note"].startswith("u1-")
    assert stored(app.config["CRM_STORE_URL"], "2")["note"].startswith("u2-")


def test_a_macro_imported_without_context_reads_for_the_renders_customer(app: Flask) -> None:
    alice, bob = logged_in(app, "1"), logged_in(app, "2")
    post_weight(alice, 61, "alice")
    post_weight(bob, 91, "bob")
    for _ in range(3):  # alternately: the imported module is never one customer's for the next
        a = alice.get("/account/macro").get_data(as_text=True)
        b = bob.get("/account/macro").get_data(as_text=True)
        assert (shown(a, "kg"), shown(a, "note")) == ("61.0", "alice")
        assert (shown(b, "kg"), shown(b, "note")) == ("91.0", "bob")


def test_without_a_customer_reads_are_empty_and_writes_are_refused(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        logged_in(app, "1").post("/account/weight", data={"kg": "70", "note": "n"})
        visitor = app.test_client()
        html = visitor.get("/account/anonymous-weight").get_data(as_text=True)
        assert (shown(html, "user"), shown(html, "kg"), shown(html, "note")) == (
            "anonymous",
            "",
            "",
        )
        # TESTING: on_error="raise"; the core's MissingOptionError is the cause.
        with pytest.raises(CrmTemplateError) as failed:
            visitor.post("/account/anonymous-weight", data={"kg": "1", "note": "x"})
        assert isinstance(failed.value.__cause__, MissingOptionError)
        assert "no current customer" in str(failed.value)
    finally:
        demo_crm.close(app)
    # Under CRM_ON_ERROR="log" the page renders and says the write was refused.
    app = make_app(tmp_path, CRM_ON_ERROR="log")
    try:
        html = (
            app.test_client()
            .post("/account/anonymous-weight", data={"kg": "1", "note": "x"})
            .get_data(as_text=True)
        )
        assert shown(html, "saved").startswith("refused: ")
        assert "no current customer" in shown(html, "saved")
        assert stored(app.config["CRM_STORE_URL"], "1") == {"kg": 70.0, "note": "n"}
    finally:
        demo_crm.close(app)


def test_after_logout_the_same_request_reads_for_nobody(app: Flask) -> None:
    from flask_login import login_user, logout_user

    from tests.flask_demo import USERS

    post_weight(logged_in(app, "1"), 70, "alice")
    template = "{{ GetCrmField(slug='weight', fieldKey='note') }}"
    with app.test_request_context("/"):
        login_user(USERS["1"])
        assert render_template_string(template) == "alice"
        logout_user()  # the loader runs per render: no view of Alice's is kept for the request
        assert render_template_string(template) == ""


# --- the customer loader ----------------------------------------------------------------------


def test_a_customer_loader_replaces_flask_login(tmp_path: Path) -> None:
    ext = CrmTemplates(store_url=f"sqlite:///{tmp_path / 'own.db'}", schema_file=str(SCHEMA))
    app = Flask(__name__)
    app.config["TESTING"] = True
    ext.init_app(app)
    try:

        @ext.customer_loader
        def from_header() -> Any:
            from flask import request

            raw = request.headers.get("X-Customer")
            return int(raw) if raw and raw.isdigit() else raw

        @app.route("/", methods=["GET", "POST"])
        def page() -> str:
            return render_template_string(
                "{% if request.method == 'POST' %}"
                "{% do SetCrmField(slug='weight', fieldKey='note', value=request.form['n']) %}"
                "{% endif %}[{{ GetCrmField(slug='weight', fieldKey='note') }}]"
            )

        client = app.test_client()
        client.post("/", data={"n": "seven"}, headers={"X-Customer": "7"})
        client.post("/", data={"n": "cus"}, headers={"X-Customer": "cus_x"})
        assert client.get("/", headers={"X-Customer": "7"}).get_data(as_text=True) == "[seven]"
        assert client.get("/", headers={"X-Customer": "cus_x"}).get_data(as_text=True) == "[cus]"
        # No customer: the empty default. This app keeps Jinja's printing (no finalize), so
        # None prints as "None": the extension does not change how the app's {{ }} print.
        assert client.get("/").get_data(as_text=True) == "[None]"
        with app.test_request_context("/", headers={"X-Customer": "7"}):
            assert ext.current_crm.customer_id == "7"  # an int is taken as its text
            assert ext.current_crm.get_field(slug="weight", fieldKey="note") == "seven"
            assert ext.service.trusted and not ext.current_crm.trusted

        ext.customer_loader(lambda: object())
        with app.test_request_context("/"), pytest.raises(CrmUsageError, match="customer_loader"):
            _ = ext.current_crm
    finally:
        ext.close(app)


def test_a_customer_in_the_render_context_takes_precedence(app: Flask) -> None:
    post_weight(logged_in(app, "2"), 90, "bob")
    with app.test_request_context("/"):
        from flask_login import login_user

        from tests.flask_demo import USERS

        login_user(USERS["1"])
        text = "{{ GetCrmField(slug='weight', fieldKey='note') }}"
        assert render_template_string(text, customer_id="2") == "bob"  # SPEC §7
        assert render_template_string(text) == ""


# --- app factory, settings --------------------------------------------------------------------


def test_one_extension_two_apps_two_stores_no_cross_talk(tmp_path: Path) -> None:
    first, second = make_app(tmp_path, "one.db"), make_app(tmp_path, "two.db")
    try:
        assert isinstance(first.extensions[EXTENSION_KEY], CrmState)
        assert first.extensions[EXTENSION_KEY] is not second.extensions[EXTENSION_KEY]
        a1, a2 = logged_in(first, "1"), logged_in(second, "1")
        post_weight(a1, 10, "first app")
        assert shown(a2.get("/account/weight").get_data(as_text=True), "note") == ""
        post_weight(a2, 20, "second app")
        assert shown(a1.get("/account/weight").get_data(as_text=True), "note") == "first app"
        assert shown(a2.get("/account/weight").get_data(as_text=True), "note") == "second app"
        assert stored(f"sqlite:///{tmp_path / 'one.db'}", "1")["note"] == "first app"
        assert stored(f"sqlite:///{tmp_path / 'two.db'}", "1")["note"] == "second app"
        with first.app_context():
            assert demo_crm.state().store_url.endswith("one.db")
        with second.app_context():
            assert demo_crm.state().store_url.endswith("two.db")
    finally:
        demo_crm.close(first)
        demo_crm.close(second)


def test_settings_come_from_app_config_over_options(tmp_path: Path) -> None:
    ext = CrmTemplates(store_url=f"sqlite:///{tmp_path / 'option.db'}", locale="de_DE")
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(CRM_STORE_URL=f"sqlite:///{tmp_path / 'config.db'}", CRM_ON_ERROR="log")
    ext.init_app(app)
    try:
        state = ext.state(app)
        assert state.store_url.endswith("config.db") and state.on_error == "log"
        assert state.render_options.locale == "de_DE"  # the option, as config has none
        assert not (tmp_path / "option.db").exists()
    finally:
        ext.close(app)
    # Without CRM_STORE_URL anywhere: crm.db in the app's instance folder.
    bare = Flask(__name__, instance_path=str(tmp_path / "inst2"))
    own = CrmTemplates(bare)
    try:
        assert own.state().store_url == f"sqlite:///{tmp_path / 'inst2' / 'crm.db'}"
        assert (tmp_path / "inst2" / "crm.db").exists()
        assert own.state(bare).on_error == "log"  # neither DEBUG nor TESTING
    finally:
        own.close()


def test_bad_settings_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="store_urll"):
        CrmTemplates(store_urll="sqlite:///x.db")
    app = Flask(__name__)
    app.config.update(CRM_STORE_URL=f"sqlite:///{tmp_path / 'x.db'}", CRM_ON_ERROR="ignore")
    with pytest.raises(ValueError, match="CRM_ON_ERROR"):
        CrmTemplates(app)
    assert EXTENSION_KEY not in app.extensions
    app.config["CRM_ON_ERROR"] = "log"
    ext = CrmTemplates(app)
    try:
        with pytest.raises(RuntimeError, match="once per app"):
            ext.init_app(app)
    finally:
        ext.close(app)
    broken = tmp_path / "broken.yaml"
    broken.write_text("entities:\n  - slug: Bad Slug\n", encoding="utf-8")
    other = Flask(__name__)
    other.config.update(CRM_STORE_URL=f"sqlite:///{tmp_path / 'y.db'}", CRM_SCHEMA_FILE=broken)
    with pytest.raises(CrmError, match=r"broken\.yaml"):
        CrmTemplates(other)
    assert EXTENSION_KEY not in other.extensions
    with pytest.raises(RuntimeError, match="init_app"):
        CrmTemplates().state(Flask(__name__))


# --- the sandbox one call away ----------------------------------------------------------------


def test_sandboxed_environment_for_user_authored_templates(app: Flask) -> None:
    post_weight(logged_in(app, "1"), 70, "alice's")
    post_weight(logged_in(app, "2"), 90, "bob's")
    env = demo_crm.sandboxed_environment(
        app,
        loader=DictLoader(
            {
                "mine.html": "{{ GetCrmField(slug='weight', fieldKey='note') }}|{{ missing }}",
                "evil.html": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
            }
        ),
    )
    assert isinstance(env, SandboxedEnvironment)
    assert not isinstance(app.jinja_env, SandboxedEnvironment)  # the app's own stay trusted
    from flask_login import login_user

    from tests.flask_demo import USERS

    for user_id, note in (("1", "alice&#39;s"), ("2", "bob&#39;s")):
        with app.test_request_context("/"):
            login_user(USERS[user_id])
            assert env.get_template("mine.html").render() == f"{note}|"
            with pytest.raises(SecurityError):
                env.get_template("evil.html").render()
    with app.app_context():  # outside a request: no customer
        assert env.get_template("mine.html").render() == "|"


# --- shutdown -----------------------------------------------------------------------------------


def test_close_drains_acknowledged_async_writes_into_the_file(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    client = logged_in(app, "1")
    for i in range(40):
        response = client.post("/account/async", data={"note": f"queued {i}"})
        assert shown(response.get_data(as_text=True), "queued") == "True"
    demo_crm.close(app)
    assert demo_crm.state(app).closed
    demo_crm.close(app)  # idempotent
    assert stored(app.config["CRM_STORE_URL"], "1")["note"] == "queued 39"


SHUTDOWN_SCRIPT = """
import sys
from tests.flask_demo import create_app

app = create_app({"TESTING": True, "CRM_STORE_URL": sys.argv[1]})
client = app.test_client()
client.get("/account/login/2")
for i in range(40):
    html = client.post("/account/async", data={"note": f"queued {i}"}).get_data(as_text=True)
    assert '<p id="queued">True</p>' in html, html
print("acknowledged")
# No close(): interpreter exit drains the queue (atexit).
"""


@pytest.mark.slow
def test_interpreter_exit_drains_async_writes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'exit.db'}"
    done = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_SCRIPT, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "acknowledged"
    assert stored(url, "2")["note"] == "queued 39"


# --- flask crm … --------------------------------------------------------------------------------


def test_flask_crm_commands_through_the_cli_runner(app: Flask, tmp_path: Path) -> None:
    post_weight(logged_in(app, "1"), 70, "from the page")
    runner = app.test_cli_runner()
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "entities:\n  - slug: visits\n    fields:\n      - {key: count, type: number}\n",
        encoding="utf-8",
    )
    result = runner.invoke(args=["crm", "ensure", str(extra)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "visits: created; fields added: count"
    result = runner.invoke(args=["crm", "ensure", str(SCHEMA)])
    assert result.output.strip() == "weight: exists; fields added: -"
    result = runner.invoke(args=["crm", "entries", "weight", "--reference-id", "1", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert {k: v for e in found for k, v in e["values"].items()} == {
        "kg": 70.0,
        "note": "from the page",
    }
    # The app's store, not ./crm.db: the visits entity exists in it now.
    with app.app_context():
        assert demo_crm.service.get_entity("visits").slug == "visits"
    # Errors: one line, exit status 1, nothing changed.
    result = runner.invoke(args=["crm", "entries", "wieght", "--reference-id", "1"])
    assert result.exit_code == 1
    assert "no CRM entity 'wieght'" in result.output and "weight" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(args=["crm", "--help"])
    assert result.exit_code == 0 and "ensure" in result.output and "entries" in result.output


@pytest.mark.slow
def test_flask_crm_commands_in_a_real_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    work = tmp_path / "cwd"  # the working directory, where no crm.db may appear
    work.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "FLASK_CRM_STORE_URL": url,
        "FLASK_INSTANCE": str(tmp_path / "instance"),
    }

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "tests.flask_demo:create_app", "crm", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    extra = tmp_path / "crm.yaml"
    extra.write_text(
        textwrap.dedent(
            """\
            entities:
              - slug: visits
                fields:
                  - {key: count, type: number}
            """
        ),
        encoding="utf-8",
    )
    done = flask("ensure", str(extra))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "visits: created; fields added: count"
    with Crm(open_store(url)) as crm:
        crm.bind("cus_1").set_field(slug="visits", fieldKey="count", value=3)
    done = flask("entries", "visits", "--reference-id", "cus_1")
    assert done.returncode == 0, done.stderr
    assert '{"count": 3.0}' in done.stdout
    done = flask("entries", "nope", "--reference-id", "cus_1")
    assert done.returncode == 1
    assert "Error: no CRM entity 'nope'" in done.stderr
    assert list(work.iterdir()) == []  # the app's store, never ./crm.db


# --- the page server is built on it -------------------------------------------------------------


def test_the_page_server_is_built_on_the_extension(tmp_path: Path) -> None:
    from crm_templates.server import create_app as create_site

    site = tmp_path / "site"
    (site / "pages").mkdir(parents=True)
    (site / "pages" / "index.html").write_text(
        "{% do SetCrmField(slug='weight', fieldKey='note', value='hi') %}"
        "[{{ GetCrmField(slug='weight', fieldKey='note') }}]",
        encoding="utf-8",
    )
    (site / "crm.yaml").write_text(SCHEMA.read_text(encoding="utf-8"), encoding="utf-8")
    app = create_site(site, TESTING=True)
    try:
        state = app.extensions[EXTENSION_KEY]
        server = app.extensions["crm"]
        assert isinstance(state, CrmState)
        assert server.crm is state.crm  # one store, one service
        assert state.store_url == f"sqlite:///{site / 'instance' / 'crm.db'}"
        assert isinstance(server.env, SandboxedEnvironment)
        assert server.env.crm_request_crm == state._request_crm_or_none  # type: ignore[attr-defined]
        assert "crm" in app.cli.commands  # flask crm … on the site's store
        assert app.test_client().get("/").get_data(as_text=True) == "[hi]"
        result = app.test_cli_runner().invoke(args=["crm", "ensure", str(site / "crm.yaml")])
        assert result.output.strip() == "weight: exists; fields added: -"
    finally:
        server.close()
    assert state.closed
