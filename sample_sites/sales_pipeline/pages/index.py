"""Backend of /: the lead form. A valid POST creates a lead for the visitor and redirects.

The visitor has no customer record until this first write; CreateCrmEntry creates it (an
anonymous customer, remembered in the session) and files the lead under it.
"""

import re

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PLANS = ("starter", "growth", "enterprise")


def handle(request, page):
    if request.method != "POST":
        return None
    form = {k: v.strip() for k, v in page.data.items() if k != "csrf_token"}
    errors = {}
    if not form.get("name"):
        errors["name"] = "Please tell us your name."
    if not EMAIL.match(form.get("email", "")):
        errors["email"] = "Please enter a valid email address, like you@company.com."
    if not form.get("company"):
        errors["company"] = "Which company are you with?"
    if form.get("plan") not in PLANS:
        errors["plan"] = "Choose a plan."
    budget = None
    if form.get("budget"):
        try:
            budget = float(form["budget"].replace(",", ""))
        except ValueError:
            errors["budget"] = "The budget must be a number, like 15000."
    if errors:
        page.set_variable("errors", errors)
        page.set_variable("form", form)
        page.status = 422
        return None

    values = {k: form[k] for k in ("name", "email", "company", "plan", "message") if form.get(k)}
    if form.get("phone"):
        values["phone"] = form["phone"]
    if budget is not None:
        values["budget"] = budget
    try:
        page.CreateCrmEntry({"slug": "leads", "title": form["company"], "values": values})
    except ValueError as exc:  # the CRM's validation (e.g. a phone number it cannot read)
        field = next((k for k in values if repr(k) in str(exc)), "name")
        page.set_variable("errors", {field: str(exc)})
        page.set_variable("form", form)
        page.status = 422
        return None
    return page.redirect("/pipeline")
