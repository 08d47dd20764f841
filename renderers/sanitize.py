"""The rich-text allow-list and the sanitiser built on it.

The policy is a handful of plain module-level constants so the core, which must not import
``renderers``, can mirror it verbatim for sanitising rich text on write. Rendering sanitises
again, so a value written before a policy change (or by another tool) is still made safe.
"""

from __future__ import annotations

from html.parser import HTMLParser

import nh3

ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "code", "dd", "del", "div", "dl",
        "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
        "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small", "span",
        "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u",
        "ul",
    }
)  # fmt: skip

# No `style` and no `on*` anywhere: inline CSS can exfiltrate or overlay, handlers execute.
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"title"}),
    "a": frozenset({"href"}),
    "img": frozenset({"src", "alt", "width", "height"}),
    "ol": frozenset({"start"}),
    "td": frozenset({"colspan", "rowspan"}),
    "th": frozenset({"colspan", "rowspan", "scope"}),
}

# Checked by nh3 after HTML entity decoding, so `&#106;avascript:` and `java&#x09;script:`
# lose their href/src like any other scheme outside this set. Relative URLs are kept.
URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto"})

LINK_REL = "noopener noreferrer nofollow"

# Dropped together with their content: the text inside them is code or foreign markup, and
# showing it as prose would only confuse a reader.
CLEAN_CONTENT_TAGS: frozenset[str] = frozenset(
    {
        "script", "style", "iframe", "object", "embed", "applet", "svg", "math", "template",
        "noscript", "noembed", "noframes", "frameset", "frame", "xmp", "textarea", "select",
        "title",
    }
)  # fmt: skip


def sanitize_html(html: str) -> str:
    """Return ``html`` reduced to the allow-list above (what rich_text/wysiwyg may contain)."""
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )


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
