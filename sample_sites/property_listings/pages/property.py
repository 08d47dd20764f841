"""Backend of /property?id=…: look the listing up by id, or answer 404.

A data-mode catalogue is not per-customer, so the entry is fetched by id with the service
(``page.crm``) and checked to be a property of the site catalogue before the template sees it.
"""


def handle(request, page):
    entry = page.crm.get_entry(request.args.get("id", ""))
    if (
        entry is None
        or entry.entity != "properties"
        or (entry.reference_type, entry.reference_id) != ("site", "catalog")
    ):
        page.abort(404, "That listing does not exist (any more).")
    page.set_variable("home", entry)
