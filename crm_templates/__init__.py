"""crm-templates: a CRM inside Jinja2 templates.

The core (`Crm`, `open_store`, the records and errors) imports neither Jinja2 nor Flask;
`CrmExtension` is loaded on first access so that importing the core stays light (SPEC §2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    BadRequestError,
    ConflictError,
    CrmError,
    CrmUsageError,
    CrmValidationError,
    DuplicateError,
    EntryNotFoundError,
    MissingOptionError,
    PreviewError,
    SchemaFileError,
    StoreError,
    StoreUnavailable,
    UnknownEntityError,
    UnknownFieldError,
    UnknownFunctionError,
    UnknownOptionError,
)
from .functions import FUNCTIONS, FunctionSpec
from .model import FIELD_TYPES, Customer, Entity, Entry, Field, Option, Pipeline, Stage
from .service import Crm, WriteResult
from .storage import Store, open_store

if TYPE_CHECKING:
    from .extension import CrmExtension, none_as_empty

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("CrmExtension", "none_as_empty"):
        from . import extension

        return getattr(extension, name)
    raise AttributeError(f"module 'crm_templates' has no attribute {name!r}")


__all__ = [
    "FIELD_TYPES",
    "FUNCTIONS",
    "BadRequestError",
    "ConflictError",
    "Crm",
    "CrmError",
    "CrmExtension",
    "CrmUsageError",
    "CrmValidationError",
    "Customer",
    "DuplicateError",
    "Entity",
    "Entry",
    "EntryNotFoundError",
    "Field",
    "FunctionSpec",
    "MissingOptionError",
    "Option",
    "Pipeline",
    "PreviewError",
    "SchemaFileError",
    "Stage",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UnknownEntityError",
    "UnknownFieldError",
    "UnknownFunctionError",
    "UnknownOptionError",
    "WriteResult",
    "none_as_empty",
    "open_store",
]
