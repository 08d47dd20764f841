"""Backend of /pipeline: the buttons. Each is a small form (with its CSRF token) posting an
``action``; the backend applies it and redirects back (POST/redirect/GET).

Pipeline moves act on the visitor's newest lead or deal, as the CRM functions do by default.
An unknown action, or a stage that does not belong to it, answers 400 naming what is accepted.
"""

LEAD_STAGES = ("contacted", "qualified")
DEAL_STAGES = ("negotiation", "won", "lost")
USAGE = (
    "Send action=lead-stage with stage=contacted or qualified, action=promote, "
    "or action=deal-stage with stage=negotiation, won or lost."
)


def handle(request, page):
    if request.method != "POST":
        return None
    action = page.data.get("action")
    stage = page.data.get("stage")
    if not isinstance(action, str) or not isinstance(stage, (str, type(None))):
        page.abort(400, f"The action and the stage must be text. {USAGE}")
    if action == "lead-stage" and stage in LEAD_STAGES:
        page.MoveCrmToStage({"slug": "leads", "stageSlug": stage})
    elif action == "promote":
        # The lead becomes a deal: mapped values are copied, the lead is removed.
        page.MoveCrmToEntity(
            {
                "fromSlug": "leads",
                "toSlug": "deals",
                "fieldMap": {
                    "name": "name",
                    "email": "email",
                    "company": "company",
                    "plan": "plan",
                    "budget": "value",
                },
                "stageSlug": "proposal",
                "removeFromOld": True,
            }
        )
    elif action == "deal-stage" and stage in DEAL_STAGES:
        page.MoveCrmToStage({"slug": "deals", "stageSlug": stage})
    else:
        page.abort(400, f"Unknown action or stage. {USAGE}")
    return page.redirect("/pipeline")
