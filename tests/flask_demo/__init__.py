"""A plain Flask app using the CRM in its own templates (issue 11, item 1): Flask-Login, a
blueprint with its own templates, the app factory pattern, `CrmTemplates` bound with
``init_app``. tests/test_flask_extension.py drives it in-process and through ``flask crm``::

    python -m flask --app "tests.flask_demo:create_app()" crm ensure tests/flask_demo/crm.yaml

Settings come from ``create_app(config)`` and, as Flask does, from ``FLASK_*`` environment
variables (``FLASK_CRM_STORE_URL``, ``FLASK_INSTANCE``…).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, abort, redirect, render_template, request
from flask_login import LoginManager, UserMixin, login_required, login_user, logout_user

from crm_templates import none_as_empty
from crm_templates.flask import CrmTemplates

HERE = Path(__file__).resolve().parent
SCHEMA = HERE / "crm.yaml"

# One extension object for every app the factory makes (Flask-SQLAlchemy's pattern).
crm = CrmTemplates(schema_file=str(SCHEMA))
login_manager = LoginManager()


class User(UserMixin):
    def __init__(self, user_id: str, name: str) -> None:
        self.id = user_id
        self.name = name


USERS = {"1": User("1", "Alice"), "2": User("2", "Bob")}


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    return USERS.get(user_id)


account = Blueprint("account", __name__, template_folder="templates", url_prefix="/account")


@account.route("/login/<user_id>")
def login(user_id: str) -> Any:
    user = USERS.get(user_id)
    if user is None:
        abort(404)
    login_user(user)
    return redirect("/account/weight")


@account.route("/logout")
def logout() -> Any:
    logout_user()
    return "signed out"


@account.route("/weight", methods=["GET", "POST"])
@login_required
def weight() -> str:
    return render_template("account/weight.html")


@account.route("/anonymous-weight", methods=["GET", "POST"])
def anonymous_weight() -> str:
    # Not behind login_required: a visitor who is not signed in has no customer.
    return render_template("account/weight.html")


@account.route("/macro")
@login_required
def macro() -> str:
    return render_template("account/macro_page.html")


@account.route("/async", methods=["POST"])
@login_required
def queue_note() -> str:
    return render_template("account/async.html", note=request.form["note"])


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app factory: ``config`` over ``FLASK_*`` environment variables."""
    app = Flask(__name__, instance_path=os.environ.get("FLASK_INSTANCE") or None)
    # A value that is not set prints as nothing, not "None" (set before jinja_env exists).
    app.jinja_options = {**app.jinja_options, "finalize": none_as_empty}
    app.config["SECRET_KEY"] = "test only"
    app.config.from_prefixed_env()
    app.config.update(config or {})
    login_manager.init_app(app)
    crm.init_app(app)
    app.register_blueprint(account)
    return app
