"""Backend of /checkin: validate the form, save the weigh-in, move the progress stage.

Runs before pages/checkin.html on GET and POST. On a valid POST it redirects to the dashboard
(POST/redirect/GET); on an invalid one it hands the errors and the typed values back to the
template, which re-renders the form.
"""

from datetime import date

SLUG = "weight-tracker"


def _weight(raw, label):
    try:
        value = float(str(raw).strip().replace(",", "."))
    except ValueError:
        return None, f"{label} must be a number in kilograms, like 72.5."
    if not 20 <= value <= 400:
        return None, f"{label} must be between 20 and 400 kg."
    return round(value, 1), None


def handle(request, page):
    if request.method != "POST":
        return None
    form = page.data
    errors = {}
    weight, errors["weight"] = _weight(form.get("weight", ""), "Your weight")
    goal, errors["goal"] = _weight(form.get("goal", ""), "Your goal")
    note = form.get("note", "").strip()
    if len(note) > 200:
        errors["note"] = "Keep the note under 200 characters."
    errors = {k: v for k, v in errors.items() if v}
    if errors:
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
