"""Types that become links: email, phone, url, image, file."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote, urlsplit

import phonenumbers
from markupsafe import Markup

import fieldtypes

from .field import FieldInfo
from .markup import classes, element, invalid
from .options import RenderOptions, babel_locale
from .registry import FieldRenderer
from .sanitize import LINK_REL
from .urls import safe_url


class EmailRenderer(FieldRenderer):
    """A ``mailto:`` link for every address `fieldtypes.email_address` accepts (the core's
    check, internationalised addresses included); anything else is plain text."""

    name = "email"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        if not isinstance(value, str):
            return invalid(field, value)
        try:
            address = fieldtypes.email_address(value)
        except fieldtypes.InvalidValue:
            return invalid(field, value)
        href = "mailto:" + quote(address, safe="@")
        return element("a", value.strip(), class_=classes(field), href=href)


def tel_target(number: str, region: str | None) -> str:
    """E.164 (plus ``;ext=``) when the number is valid read in ``region``; else its dialable
    digits as entered (a national number shown in another country's locale still dials)."""
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return fieldtypes.phone_dial(number)
    if not phonenumbers.is_valid_number(parsed):
        return fieldtypes.phone_dial(number)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return f"{e164};ext={parsed.extension}" if parsed.extension else e164


class PhoneRenderer(FieldRenderer):
    """A ``tel:`` link for every number `fieldtypes.phone_number` accepts (the core's check),
    showing the number as it was entered; see `tel_target` for the link."""

    name = "phone"

    def html(self, value: Any, field: FieldInfo, options: RenderOptions) -> Markup:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # the core accepts numbers for phones and stores them as text
        try:
            shown = fieldtypes.phone_number(value)
        except fieldtypes.InvalidValue:
            return invalid(field, value)
        href = "tel:" + tel_target(shown, babel_locale(options.locale).territory)
        return element("a", shown, class_=classes(field), href=href)


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
