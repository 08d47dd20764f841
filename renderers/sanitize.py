"""Rich text: the sanitiser and the plain-text view of sanitised HTML.

The allow-list itself lives in `fieldtypes.richtext`, which the core uses to sanitise on write:
one policy, imported by both layers (SPEC §2 keeps them from importing each other). It is
re-exported here. Rendering sanitises again, so a value written before a policy change (or by
another tool) is still made safe.
"""

from __future__ import annotations

from html.parser import HTMLParser

from fieldtypes.richtext import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    CLEAN_CONTENT_TAGS,
    LINK_REL,
    URL_SCHEMES,
    sanitize_html,
)

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_TAGS",
    "CLEAN_CONTENT_TAGS",
    "LINK_REL",
    "URL_SCHEMES",
    "html_to_text",
    "sanitize_html",
]

_BLOCK_TAGS = frozenset(
    {
        "blockquote", "br", "caption", "dd", "div", "dl", "dt", "figcaption", "figure", "h1",
        "h2", "h3", "h4", "h5", "h6", "hr", "li", "ol", "p", "pre", "table", "tr", "ul",
    }
)  # fmt: skip


class _TextExtractor(HTMLParser):
    """Collects text, turning block boundaries into line breaks so paragraphs stay apart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of sanitised rich text: one line per block, runs of spaces collapsed."""
    extractor = _TextExtractor()
    extractor.feed(sanitize_html(html))
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)
