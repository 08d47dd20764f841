"""Storage backends and `open_store(url)`, the one place a URL becomes a backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import CrmValidationError, StoreError
from .base import Store

SEARCH_SCHEMES = ("elasticsearch", "elasticsearch+https", "opensearch", "opensearch+https",
                  "http", "https")  # fmt: skip


def open_store(url: str, **options: Any) -> Store:
    """Open the store a URL names.

    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite:///:memory:``
    * ``elasticsearch://host:port``, ``opensearch://host:port`` (``+https`` for TLS), or a plain
      ``http(s)://`` cluster URL — needs the ``elasticsearch`` extra.
    """
    if not isinstance(url, str) or "://" not in url:
        raise CrmValidationError(
            f"store URL must look like 'sqlite:///crm.db' or 'opensearch://localhost:9200'; "
            f"got {url!r}"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        path = url[len("sqlite:///") :] if url.lower().startswith("sqlite:///") else ""
        if not path:
            raise CrmValidationError(
                f"SQLite URLs need three slashes and a path: 'sqlite:///crm.db'; got {url!r}"
            )
        return SQLiteStore(path, **options)
    if scheme in SEARCH_SCHEMES:
        try:
            from .elasticsearch import ElasticsearchStore
        except ImportError as exc:
            raise StoreError(
                f"the Elasticsearch backend needs its client: pip install 'crm-templates"
                f"[elasticsearch]' ({exc})"
            ) from exc
        return ElasticsearchStore.from_url(url, **options)
    raise CrmValidationError(
        f"unknown store URL scheme {scheme!r}; use sqlite://, elasticsearch:// or opensearch://"
    )


__all__ = ["Store", "open_store"]
