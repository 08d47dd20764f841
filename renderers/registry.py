"""The renderer registry: type name → renderers, newest first, with Datasette-style fall-through."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any, ClassVar, Protocol, runtime_checkable

from markupsafe import Markup

from fieldtypes import has_lone_surrogates

from .field import FieldInfo
from .markup import classes, element, invalid, plain, shown
from .options import DEFAULT_OPTIONS, RenderOptions

# What formatting a value no check accepted can raise: too deep or long to print, lone
# surrogates, numbers past a float.
_HOSTILE = (RecursionError, ValueError, OverflowError, UnicodeError, TypeError)


def _sendable(html: Markup) -> Markup:
    """``html`` with any lone surrogate (from a value no check accepted) as its ``\\udXXX``
    escape: a page holding one cannot be encoded as UTF-8 and would fail whole."""
    if has_lone_surrogates(html):
        return Markup(str(html).encode("utf-8", "backslashreplace").decode("utf-8"))
    return html


class RendererError(Exception):
    """Root of the errors this package raises."""


class UnknownFieldType(RendererError, ValueError):
    """A field's type has no renderer."""


class DuplicateRenderer(RendererError, ValueError):
    """A type name was registered twice without ``replace=True``."""


@runtime_checkable
class Renderer(Protocol):
    """Renders one type. Returning None from either method falls through to the renderer
    registered before it for the same name (and finally to escaped text)."""

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup | None: ...

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str | None: ...


HtmlFunction = Callable[[Any, FieldInfo, RenderOptions], "Markup | None"]


class FieldRenderer:
    """Base class for renderers: ``name`` is the type it is registered under by default."""

    name: ClassVar[str]

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup | None:
        raise NotImplementedError

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str | None:
        return str(value)


class _FunctionRenderer:
    """Lets a plain function be registered; it has no text twin, so text falls through."""

    def __init__(self, function: HtmlFunction) -> None:
        self.function = function

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup | None:
        return self.function(value, field, options)

    def text(self, value: Any, field: FieldInfo, options: RenderOptions) -> str | None:
        return None


# Type names end up in class attributes (crm-<type>), so they are kept to a CSS-safe shape.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def is_empty(value: Any) -> bool:
    """None and empty strings/collections are empty; 0 and False are values."""
    return value is None or (isinstance(value, Collection) and len(value) == 0)


class RendererRegistry:
    """Maps type names to renderers and renders values through them."""

    def __init__(self) -> None:
        self._chains: dict[str, tuple[Renderer, ...]] = {}

    def register(
        self, name: str, renderer: Renderer | HtmlFunction, *, replace: bool = False
    ) -> None:
        """Register ``renderer`` for type ``name``.

        A name registered twice is a mistake unless the application says otherwise, so it
        raises ``DuplicateRenderer``. ``replace=True`` puts the new renderer in front of
        the existing one; where it returns None, the earlier renderer still answers.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"renderer name {name!r} must match {_NAME.pattern!r}")
        if name in self._chains and not replace:
            raise DuplicateRenderer(
                f"a renderer for {name!r} is already registered; pass replace=True to override it"
            )
        if isinstance(renderer, type):
            raise TypeError(f"register an instance of {renderer.__name__}, not the class")
        if not isinstance(renderer, Renderer):
            renderer = _FunctionRenderer(renderer)
        self._chains[name] = (renderer, *self._chains.get(name, ()))

    def names(self) -> list[str]:
        """The registered type names, sorted."""
        return sorted(self._chains)

    def __contains__(self, name: object) -> bool:
        return name in self._chains

    def copy(self) -> RendererRegistry:
        """An independent registry with the same renderers, for overrides kept local."""
        clone = RendererRegistry()
        clone._chains = dict(self._chains)
        return clone

    def _resolve(self, field: Any) -> tuple[FieldInfo, tuple[Renderer, ...]]:
        info = FieldInfo.of(field)
        chain = self._chains.get(info.type) if isinstance(info.type, str) else None
        if chain is None:
            raise UnknownFieldType(
                f"unknown field type {info.type!r}; known types: {', '.join(self.names())}"
            )
        return info, chain

    def render(self, value: Any, field: Any, options: RenderOptions | None = None) -> Markup:
        """``value`` as safe HTML whose outer element has the classes ``crm-field crm-<type>``."""
        info, chain = self._resolve(field)
        opts = DEFAULT_OPTIONS if options is None else options
        if is_empty(value):
            if not opts.placeholder:
                return Markup("")
            return element("span", opts.placeholder, class_=classes(info, "crm-empty"))
        try:
            for renderer in chain:
                html = renderer.html(value, info, opts)
                if html is not None:
                    return html if html.isascii() else _sendable(html)
        except _HOSTILE:
            # A value no check accepted (built in a template, not read from the store) that
            # a formatter cannot even take: shown as invalid text, never raised (issue 9).
            return invalid(info, value)
        return plain(info, value)

    def render_text(self, value: Any, field: Any, options: RenderOptions | None = None) -> str:
        """The plain-text twin of ``render`` (no HTML; escape it where it is embedded)."""
        info, chain = self._resolve(field)
        opts = DEFAULT_OPTIONS if options is None else options
        if is_empty(value):
            return opts.placeholder
        try:
            for renderer in chain:
                text = renderer.text(value, info, opts)
                if text is not None:
                    return shown(text)
        except _HOSTILE:
            pass
        return shown(value)
