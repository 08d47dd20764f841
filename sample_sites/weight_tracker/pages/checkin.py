"""Backend of /checkin: validate the form, save the weigh-in, move the progress stage.

Runs before pages/checkin.html on GET and POST. On a valid POST it redirects to the dashboard
(POST/redirect/GET); on an invalid one it hands the errors and the typed values back to the
template, which re-renders the form with 422 — or, for a JSON client, answers
``{"ok": false, "errors": {...}}`` with 422. The body is a form or a JSON object
(``{"weight": 72.5, "goal": 70, "note": "..."}``); the server answers anything else with 400/415
before this code runs.
"""

from datetime import date

SLUG = "weight-tracker"
NOTE_LIMIT = 200


def _weight(raw, label):
    """A weight in kg (a number, or text like "72,5") rounded to 0.1, or an error message."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
        return None, f"{label} must be a number in kilograms, like 72.5."
    try:
        value = float(str(raw).strip().replace(",", "."))
    except ValueError:
        return None, f"{label} must be a number in kilograms, like 72.5."
    if not 20 <= value <= 400:  # also refuses nan and inf
        return None, f"{label} must be between 20 and 400 kg."
    return round(value, 1), None


def _note(raw):
    """The optional note (text up to NOTE_LIMIT characters), or an error message."""
    if raw is None:
        return "", None
    if not isinstance(raw, str):
        return None, "The note must be text."
    note = raw.strip()
    if len(note) > NOTE_LIMIT:
        return None, f"Keep the note under {NOTE_LIMIT} characters."
    return note, None


def handle(request, page):
    if request.method != "POST":
        return None
    form = page.data
    errors = {}
    weight, errors["weight"] = _weight(form.get("weight", ""), "Your weight")
    goal, errors["goal"] = _weight(form.get("goal", ""), "Your goal")
    note, errors["note"] = _note(form.get("note"))
    errors = {k: v for k, v in errors.items() if v}
    if errors:
        if request.is_json:
            return page.json({"ok": False, "errors": errors}, status=422)
        page.set_variable("errors", errors)
        page.set_variable("form", form)
        page.status = 422
        return None

    today = date.today().isoformat()
    # The first write creates the visitor's (anonymous) customer record.
    page.SetCrmFields(
        {
            "slug": SLUG,
            "fields": {"current_weight": weight, "goal_weight": goal, "last_checkin": today},
        }
    )
    weighin = {"date": today, "weight": weight}
    if note:
        weighin["note"] = note
    page.AddCrmFieldValue({"slug": SLUG, "fieldKey": "weighin_history", "value": weighin})
    # The newest entry (this weigh-in) carries the stage the dashboard shows.
    stage = "goal-reached" if weight <= goal else "in-progress"
    page.MoveCrmToStage({"slug": SLUG, "stageSlug": stage})
    return page.redirect("/")
