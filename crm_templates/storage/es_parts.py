"""What the search backend's storage mixins use of `ElasticsearchStore`, declared once for the
type checker (the mixins in api_keys.py, audit.py, operators.py and webhooks.py are mixed into
`ElasticsearchStore`, which provides all of it). No runtime content."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..errors import StoreError


class ElasticsearchParts:
    """Base of the search backend's storage mixins: the store's helpers they call."""

    if TYPE_CHECKING:  # provided by ElasticsearchStore
        indices: dict[str, str]
        client: Any
        refresh: str
        url: str

        def _translate(
            self, what: str, conflict: type[StoreError] = ...
        ) -> AbstractContextManager[None]: ...

        def _get(
            self, index: str, doc_id: str, what: str, **params: Any
        ) -> dict[str, Any] | None: ...

        def _hits(
            self,
            index: str,
            query: dict[str, Any],
            sort: list[dict[str, str]],
            *,
            size: int | None,
            offset: int = 0,
            what: str,
            source_excludes: list[str] | None = None,
        ) -> list[dict[str, Any]]: ...


__all__ = ["ElasticsearchParts"]
