"""The rich-text allow-list and the sanitiser built on it (rich_text / wysiwyg values).

The core sanitises on write and `renderers` sanitises again on render, so a value written before
a policy change (or by another tool) is still made safe. Both call ``sanitize_html``, so the
two passes can never disagree about what rich text may contain.
"""

from __future__ import annotations

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
    """``html`` reduced to the allow-list above (what rich_text/wysiwyg may contain).

    ``html`` must be valid Unicode text (no lone surrogates; see `fieldtypes.checks.text`):
    nh3 is Rust and refuses anything else with ``UnicodeEncodeError``.
    """
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=LINK_REL,
        strip_comments=True,
    )
