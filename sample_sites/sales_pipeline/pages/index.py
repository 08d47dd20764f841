"""Backend of /: the lead form. A valid POST creates a lead for the visitor and redirects.

The visitor has no customer record until this first write; CreateCrmEntry creates it (an
anonymous customer, remembered in the session) and files the lead under it.

The body is the form or a JSON object with the same keys (``budget`` may be a JSON number).
Invalid input re-renders the form with the errors and 422 — or, for a JSON client, answers
``{"ok": false, "errors": {...}}`` with 422.
"""

import re

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PLANS = ("starter", "growth", "enterprise")
TEXT_FIELDS = ("name", "email", "company", "plan", "phone", "message", "budget")
MAX_LENGTH = 1000


def _clean(data):
    """The form's text fields, stripped, and an error per field that is not short text."""
    form, errors = {}, {}
    for key in TEXT_FIELDS:
        value = data.get(key, "")
        if key == "budget" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # a JSON client sends the budget as a number
        if not isinstance(value, str):
            errors[key] = "Please enter text here."
        elif len(value) > MAX_LENGTH:
            errors[key] = f"Please keep this under {MAX_LENGTH} characters."
        else:
            form[key] = value.strip()
    return form, errors


def _validate(form, errors):
    """Add the errors of the well-typed fields; return the budget as a number (or None)."""
    if "name" in form and not form["name"]:
        errors["name"] = "Please tell us your name."
    if "email" in form and not EMAIL.match(form["email"]):
        errors["email"] = "Please enter a valid email address, like you@company.com."
    if "company" in form and not form["company"]:
        errors["company"] = "Which company are you with?"
    if "plan" in form and form["plan"] not in PLANS:
        errors["plan"] = "Choose a plan."
    if form.get("budget"):
        try:
            return float(form["budget"].replace(",", ""))
        except ValueError:
            errors["budget"] = "The budget must be a number, like 15000."
    return None


def _invalid(request, page, form, errors):
    if request.is_json:
        return page.json({"ok": False, "errors": errors}, status=422)
    page.set_variable("errors", errors)
    page.set_variable("form", form)
    page.status = 422
    return None


def handle(request, page):
    if request.method != "POST":
        return None
    form, errors = _clean(page.data)
    budget = _validate(form, errors)
    if errors:
        return _invalid(request, page, form, errors)

    values = {k: form[k] for k in ("name", "email", "company", "plan", "message") if form.get(k)}
    if form.get("phone"):
        values["phone"] = form["phone"]
    if budget is not None:
        values["budget"] = budget
    try:
        page.CreateCrmEntry({"slug": "leads", "title": form["company"], "values": values})
    except ValueError as exc:  # the CRM's validation (e.g. a phone number it cannot read)
        field = next((k for k in values if repr(k) in str(exc)), "name")
        return _invalid(request, page, form, {field: str(exc)})
    return page.redirect("/pipeline")
