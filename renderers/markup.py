"""The one place HTML is assembled: every attribute value and text node goes through escape()."""

from __future__ import annotations

from collections.abc import Iterable

from markupsafe import Markup, escape

from fieldtypes import has_lone_surrogates

from .field import FieldInfo

_VOID = frozenset({"br", "img"})


def element(tag: str, content: object = "", /, **attrs: object) -> Markup:
    """``<tag attrs>content</tag>`` with the content and every attribute value escaped.

    Attribute names come from our own code only (``class_`` → ``class``, ``aria_label`` →
    ``aria-label``); None and False drop the attribute, True writes it bare.
    """
    parts = [tag]
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        html_name = name.rstrip("_").replace("_", "-")
        parts.append(html_name if value is True else f'{html_name}="{escape(value)}"')
    opening = f"<{' '.join(parts)}>"
    if tag in _VOID:
        return Markup(opening)
    return Markup(f"{opening}{escape(content)}</{tag}>")


def join(items: Iterable[object], separator: str = "") -> Markup:
    """Concatenate, escaping anything that is not already Markup."""
    return Markup(escape(separator)).join(escape(item) for item in items)


def classes(field: FieldInfo, *extra: str) -> str:
    """The outer element's classes: ``crm-field crm-<type>`` plus modifiers."""
    return " ".join(("crm-field", f"crm-{field.type}", *extra))


def shown(value: object) -> str:
    """``str(value)`` that never raises and is always valid UTF-8: a value built in a
    template (a 3,000-deep list, a 5,000-digit int) makes ``str`` raise, and a lone surrogate
    cannot be sent in a page, so it is shown as its ``\\udXXX`` escape."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = str(value)
        except (RecursionError, ValueError, OverflowError, TypeError):
            text = f"<{type(value).__name__}>"
    if has_lone_surrogates(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def plain(field: FieldInfo, text: object, *extra: str) -> Markup:
    """Escaped text in a span: the safe rendering of anything that failed validation."""
    return element("span", shown(text), class_=classes(field, *extra))


def invalid(field: FieldInfo, value: object) -> Markup:
    """A value its type rejected, shown as text and marked so a page can style it."""
    return plain(field, value, "crm-invalid")
