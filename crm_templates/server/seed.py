"""Demo data for a site: ``SITE_DIR/seed.yaml``, loaded by ``crm-templates seed`` and on the
first start of an empty store.

The loader moved to the core (`crm_templates.loading`, issue 11, item 4); its names stay
importable from here. The file's keys: ``crm-templates schema seed --markdown``.

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
"""

from __future__ import annotations

from ..loading import load_seed, read_seed_file, store_is_empty

__all__ = ["load_seed", "read_seed_file", "store_is_empty"]
