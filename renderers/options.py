"""Per-call rendering settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError

ReferenceLabels = Callable[[str, Sequence[str]], Mapping[str, str]]
ReferenceUrl = Callable[[str, str], "str | None"]


@lru_cache(maxsize=64)
def babel_locale(name: str) -> Locale:
    """The Babel locale for ``name`` (``en_US`` or ``en-US``), cached: parsing is not free."""
    try:
        return Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown locale {name!r}; use a CLDR name such as 'en_US'") from exc


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, cached for the same reason as ``babel_locale``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}; use an IANA name such as 'UTC'") from exc


@dataclass(frozen=True)
class RenderOptions:
    """How values are shown: locale, time zone, placeholder and the reference look-ups.

    ``reference_labels(target_entity, ids)`` returns ``{id: label}`` and is called once per
    render call with every id, so a multi_reference costs one batched look-up.
    ``reference_url(target_entity, id)`` returns a link target; only http(s) URLs and
    site-relative paths starting with ``/`` are used, anything else leaves the label unlinked.
    """

    locale: str = "en_US"
    timezone: str = "UTC"
    placeholder: str = ""
    reference_labels: ReferenceLabels | None = None
    reference_url: ReferenceUrl | None = None
    json_max_depth: int = 4
    image_max_size: int = 160

    def __post_init__(self) -> None:
        # Fail when the options are built, not halfway through rendering a page.
        babel_locale(self.locale)
        zone(self.timezone)
        if self.json_max_depth < 1:
            raise ValueError(f"json_max_depth must be at least 1, got {self.json_max_depth!r}")
        if self.image_max_size < 1:
            raise ValueError(f"image_max_size must be at least 1, got {self.image_max_size!r}")


DEFAULT_OPTIONS = RenderOptions()
