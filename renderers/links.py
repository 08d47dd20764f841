"""Types that become links: email, phone, url, image, file."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import phonenumbers
from markupsafe import Markup

from .field import FieldInfo
from .markup import classes, element, invalid
from .options import RenderOptions, babel_locale
from .registry import FieldRenderer
from .sanitize import LINK_REL
from .urls import safe_url

# A deliberately plain shape check (atext local part, dotted domain): enough to decide whether
# a mailto: link makes sense. The core validates addresses properly on write.
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")


class EmailRenderer(FieldRenderer):
    """A ``mailto:`` link; anything not shaped like an address is plain text."""

    name = "email"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        address = str(value).strip()
        if len(address) > 254 or not _EMAIL.fullmatch(address):
            return invalid(field, value)
        href = "mailto:" + quote(address, safe="@")
        return element("a", address, class_=classes(field), href=href)


class PhoneRenderer(FieldRenderer):
    """A ``tel:`` link to the E.164 form, showing the number as it was entered."""

    name = "phone"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        shown = str(value)
        region = babel_locale(options.locale).territory
        try:
            number = phonenumbers.parse(shown, region)
        except phonenumbers.NumberParseException:
            return invalid(field, value)
        # Valid, not merely possible: a tel: link to a number that cannot exist helps no one.
        if not phonenumbers.is_valid_number(number):
            return invalid(field, value)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        return element("a", shown.strip(), class_=classes(field), href=f"tel:{e164}")


class UrlRenderer(FieldRenderer):
    """An outbound link for absolute http(s) URLs only; other schemes are plain text."""

    name = "url"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        url = safe_url(value)
        if url is None:
            return invalid(field, value)
        return element("a", url, class_=classes(field), href=url, rel=LINK_REL)


def file_name(url: str) -> str:
    """The last path segment, URL-decoded (the URL itself when the path has none)."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or url


class ImageRenderer(FieldRenderer):
    """A lazy, size-bounded thumbnail linking to the full image (http(s) or ``/path``)."""

    name = "image"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        url = safe_url(value, allow_relative=True)
        if url is None:
            return invalid(field, value)
        size = int(options.image_max_size)
        img = element(
            "img",
            src=url,
            alt=field.label or file_name(url),
            loading="lazy",
            decoding="async",
            # Built from an int option, never from the value: the only non-swatch style.
            style=f"max-width:{size}px;max-height:{size}px",
        )
        return element("a", img, class_=classes(field), href=url, rel=LINK_REL)


class FileRenderer(FieldRenderer):
    """A download link labelled with the file name (http(s) or ``/path``)."""

    name = "file"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        url = safe_url(value, allow_relative=True)
        if url is None:
            return invalid(field, value)
        return element(
            "a", file_name(url), class_=classes(field), href=url, rel=LINK_REL, download=True
        )
