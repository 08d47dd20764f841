"""Field-type renderers: a value plus its field definition in, safe HTML out.

    >>> import renderers
    >>> str(renderers.render("a&b", {"type": "text"}))
    '<span class="crm-field crm-text">a&amp;b</span>'

Depends only on the standard library, MarkupSafe, nh3, phonenumbers, Babel, email-validator
and `fieldtypes` (the value checks it shares with the core, so every value the core stores
renders normally), so it can be used without Jinja, Flask or the CRM core.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from .choices import MultiReferenceRenderer, MultiselectRenderer, ReferenceRenderer, SelectRenderer
from .field import Choice, FieldInfo
from .formats import BooleanRenderer, ColorRenderer, DateRenderer, DatetimeRenderer, NumberRenderer
from .links import EmailRenderer, FileRenderer, ImageRenderer, PhoneRenderer, UrlRenderer
from .markup import element
from .options import RenderOptions
from .registry import (
    DuplicateRenderer,
    FieldRenderer,
    Renderer,
    RendererError,
    RendererRegistry,
    UnknownFieldType,
)
from .sanitize import sanitize_html
from .text import RichTextRenderer, TextareaRenderer, TextRenderer, WysiwygRenderer
from .tree import JsonRenderer
from .urls import safe_url

__all__ = [
    "BUILTIN_RENDERERS",
    "Choice",
    "DuplicateRenderer",
    "FieldInfo",
    "FieldRenderer",
    "RenderOptions",
    "Renderer",
    "RendererError",
    "RendererRegistry",
    "UnknownFieldType",
    "builtin_registry",
    "element",
    "registry",
    "render",
    "render_text",
    "safe_url",
    "sanitize_html",
]

BUILTIN_RENDERERS: tuple[FieldRenderer, ...] = (
    TextRenderer(),
    TextareaRenderer(),
    RichTextRenderer(),
    WysiwygRenderer(),
    EmailRenderer(),
    PhoneRenderer(),
    UrlRenderer(),
    NumberRenderer(),
    DateRenderer(),
    DatetimeRenderer(),
    BooleanRenderer(),
    SelectRenderer(),
    MultiselectRenderer(),
    ColorRenderer(),
    ImageRenderer(),
    FileRenderer(),
    JsonRenderer(),
    ReferenceRenderer(),
    MultiReferenceRenderer(),
)


def builtin_registry() -> RendererRegistry:
    """A new registry holding every built-in type, for applications that keep their own."""
    fresh = RendererRegistry()
    for renderer in BUILTIN_RENDERERS:
        fresh.register(renderer.name, renderer)
    return fresh


registry = builtin_registry()
"""The process-wide registry behind ``render`` and ``render_text``."""


def render(value: Any, field: Any, options: RenderOptions | None = None) -> Markup:
    """``value`` as safe HTML for ``field`` (a mapping or object with at least ``type``)."""
    return registry.render(value, field, options)


def render_text(value: Any, field: Any, options: RenderOptions | None = None) -> str:
    """The plain-text twin of ``render``."""
    return registry.render_text(value, field, options)
