"""Demo data for a site: ``SITE_DIR/seed.yaml``, loaded by ``crm-templates seed`` and on the
first start of an empty store.

    customers:
      - key: dana                      # a name other records use
        email: dana@example.com
        first_name: Dana
    entries:                           # created in file order (the last is the newest)
      - entity: cities
        key: lisbon
        reference: {type: site, id: catalog}
        title: Lisbon
        values: {name: Lisbon, country: Portugal}
      - entity: properties
        reference: {type: site, id: catalog}
        values: {city: lisbon}         # reference fields name seed keys, not ids
      - entity: weight-tracker
        customer: dana                 # reference customer/<dana's id>
        stage: in-progress
        values: {current_weight: 82}

Every record goes through the service, so seed values are validated like any other write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import CrmValidationError
from ..model import REFERENCE_TYPES
from ..service import Crm


def store_is_empty(crm: Crm) -> bool:
    """True when the store has no customers and no entries (entities may exist)."""
    store = crm.store
    return store.count_customers() == 0 and next(iter(store.iter_entries()), None) is None


def _load(path: Path) -> Mapping[str, Any]:
    import yaml

    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(data, Mapping):
        raise CrmValidationError(f"{path}: expected a mapping with 'customers' and 'entries'")
    return data


def load_seed(crm: Crm, path: str | Path) -> dict[str, int]:
    """Create the customers and entries of a seed file; returns ``{customers, entries}``."""
    path = Path(path)
    data = _load(path)
    customers: dict[str, str] = {}
    for n, doc in enumerate(data.get("customers") or []):
        where = f"{path}: customers[{n}]"
        email = doc.get("email")
        existing = crm.find_customer(email) if email else None
        customer = existing or crm.create_customer(
            email, first_name=doc.get("first_name"), last_name=doc.get("last_name")
        )
        if "key" not in doc:
            raise CrmValidationError(f"{where} needs a 'key' that entries refer to")
        customers[doc["key"]] = customer.id
    keys: dict[str, str] = {}
    count = 0
    for n, doc in enumerate(data.get("entries") or []):
        where = f"{path}: entries[{n}]"
        try:
            options = _entry_options(crm, doc, customers, keys)
            result = crm.create_entry(options)
        except (CrmValidationError, TypeError, KeyError) as exc:
            raise CrmValidationError(f"{where}: {exc}") from exc
        if doc.get("key"):
            keys[doc["key"]] = result["id"]
        count += 1
    return {"customers": len(customers), "entries": count}


def _entry_options(
    crm: Crm, doc: Mapping[str, Any], customers: Mapping[str, str], keys: Mapping[str, str]
) -> dict[str, Any]:
    entity = crm.get_entity(doc["entity"])
    fields = {f.key: f for f in entity.fields}
    values = dict(doc.get("values") or {})
    for key, value in values.items():
        field = fields.get(key)
        if field is not None and field.type in REFERENCE_TYPES and value is not None:
            names = [value] if isinstance(value, str) else list(value)
            missing = [v for v in names if v not in keys]
            if missing:
                raise CrmValidationError(
                    f"{key!r} names {', '.join(map(repr, missing))}, which no earlier entry "
                    "has as its 'key'"
                )
            ids = [keys[v] for v in names]
            values[key] = ids[0] if isinstance(value, str) else ids
    options: dict[str, Any] = {"slug": entity.slug, "values": values}
    if doc.get("title"):
        options["title"] = doc["title"]
    if doc.get("stage"):
        options["stageSlug"] = doc["stage"]
    if doc.get("pipeline"):
        options["pipelineSlug"] = doc["pipeline"]
    if "customer" in doc:
        if doc["customer"] not in customers:
            raise CrmValidationError(f"no seed customer with key {doc['customer']!r}")
        options.update(referenceType="customer", referenceId=customers[doc["customer"]])
    else:
        reference = doc.get("reference")
        if not isinstance(reference, Mapping) or not {"type", "id"} <= reference.keys():
            raise CrmValidationError("needs 'customer: <key>' or 'reference: {type: …, id: …}'")
        options.update(referenceType=reference["type"], referenceId=reference["id"])
    return options
