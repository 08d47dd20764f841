"""MkDocs hooks (``hooks:`` in mkdocs.yml): reference tables generated from the code itself, so
the documentation cannot drift from it.

``<!-- generated:function-options -->`` in a page becomes the option table of every CRM function
(``crm_templates.functions.FUNCTIONS``), ``<!-- generated:option-aliases -->`` the table of
accepted spellings (``ALIASES``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

FUNCTION_OPTIONS = "<!-- generated:function-options -->"
OPTION_ALIASES = "<!-- generated:option-aliases -->"
# ``<!-- generated:schema-reference crm -->`` / ``... seed -->``: every key of the shipped JSON
# Schemas, the same Markdown as ``crm-templates schema crm|seed --markdown``.
SCHEMA_REFERENCE = "<!-- generated:schema-reference {name} -->"


def on_config(config: Any) -> Any:
    """Import this checkout's code (not an installed copy), for these tables and mkdocs-click."""
    root = str(Path(config.config_file_path).resolve().parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    return config


def _code(names: Any) -> str:
    return ", ".join(f"`{n}`" for n in names) or "—"


def _failure(value: Any) -> str:
    if value == "result":
        return "`{ok: False, error}`"
    return f"`{value!r}`"


def function_options() -> str:
    """One row per function: spellings, method, kind, required and optional options."""
    from crm_templates.functions import FUNCTIONS

    rows = [
        '| function | method | kind | required | optional | under `on_error="log"` |',
        "|---|---|---|---|---|---|",
    ]
    for spec in FUNCTIONS.values():
        optional = [o for o in spec.options if o not in spec.required]
        rows.append(
            f"| {spec.name} / `{spec.camel_name}` | `{spec.method}` | {spec.kind} "
            f"| {_code(spec.required)} | {_code(optional)} | {_failure(spec.failure)} |"
        )
    return "\n".join(rows)


def option_aliases() -> str:
    """Every accepted spelling and the option it stands for."""
    from crm_templates.functions import ALIASES

    rows = ["| spelling | option |", "|---|---|"]
    rows += [f"| `{alias}` | `{name}` |" for alias, name in sorted(ALIASES.items())]
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if FUNCTION_OPTIONS in markdown:
        markdown = markdown.replace(FUNCTION_OPTIONS, function_options())
    if OPTION_ALIASES in markdown:
        markdown = markdown.replace(OPTION_ALIASES, option_aliases())
    for name in ("crm", "seed"):
        marker = SCHEMA_REFERENCE.format(name=name)
        if marker in markdown:
            from crm_templates.schemadoc import schema_reference

            markdown = markdown.replace(marker, schema_reference(name))
    return markdown
