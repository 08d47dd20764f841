"""The page server (Flask): serves a site's pages with the session customer's CRM data.

    from crm_templates.server import create_app
    app = create_app("sample_sites/weight_tracker")

Nothing else in the project imports this package (SPEC §2); the ``crm-templates`` command loads
its commands lazily, so importing `crm_templates.server.cli` must not pull in Flask. That is why
the names below are resolved on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .pages import Page, RequestView
    from .state import CrmServer

_LAZY = {
    "create_app": ".app",
    "CrmServer": ".state",
    "Page": ".pages",
    "RequestView": ".pages",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'crm_templates.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __name__), name)


__all__ = ["CrmServer", "Page", "RequestView", "create_app"]
