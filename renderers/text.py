"""Text-like types: text, textarea, rich_text and its alias wysiwyg."""

from __future__ import annotations

import re
from typing import Any

from markupsafe import Markup

from .field import FieldInfo
from .markup import classes, element, join
from .options import RenderOptions
from .registry import FieldRenderer
from .sanitize import html_to_text, sanitize_html

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class TextRenderer(FieldRenderer):
    """Escaped text in a span."""

    name = "text"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        return element("span", str(value), class_=classes(field))


class TextareaRenderer(FieldRenderer):
    """Escaped text with its line breaks turned into ``<br>`` so no CSS is needed."""

    name = "textarea"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        lines = _LINE_BREAK.split(str(value))
        return element("div", join(lines, Markup("<br>")), class_=classes(field))


class RichTextRenderer(FieldRenderer):
    """Sanitised HTML in a div, sanitised here even though the core sanitises on write."""

    name = "rich_text"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        # wysiwyg shares the rich_text class so one stylesheet rule covers both.
        extra = () if field.type == "rich_text" else ("crm-rich_text",)
        return element("div", Markup(sanitize_html(str(value))), class_=classes(field, *extra))

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str:
        return html_to_text(str(value))


class WysiwygRenderer(RichTextRenderer):
    """The seed's other name for rich_text; classes ``crm-field crm-wysiwyg crm-rich_text``."""

    name = "wysiwyg"
