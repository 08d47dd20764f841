"""A site on disk: its pages (routes), page backends, templates and schema file.

URLs map only onto files found by scanning ``SITE_DIR/pages``: a request path is a key into
that table, never joined onto a directory, so no spelling of ``..`` can reach another file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import CrmError

SCHEMA_FILES = ("crm.yaml", "crm.yml", "crm.json")
# File and directory names that become URL segments. Names starting with "_" or "." are
# partials/private (``pages/_form.html``) and never routed.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class SiteError(CrmError):
    """The site directory is not usable (missing, or no ``pages/``)."""


@dataclass(frozen=True)
class PageRoute:
    """What one URL path serves: a template, a backend, or both."""

    url: str
    template: str | None  # loader name, "pages/<relative path>"
    backend: Path | None


@dataclass
class _Backend:
    module: ModuleType
    mtime: float


class Site:
    """The files of one site directory."""

    def __init__(self, root: str | os.PathLike[str], *, reload: bool = False) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SiteError(f"site directory {str(root)!r} does not exist")
        self.pages_dir = self.root / "pages"
        if not self.pages_dir.is_dir():
            raise SiteError(
                f"site directory {str(root)!r} has no pages/ folder; put page templates in "
                f"{str(self.pages_dir)!r} (pages/index.html is served at /)"
            )
        self.templates_dir = self.root / "templates"
        self.static_dir = self.root / "static"
        self.reload = reload
        self._lock = threading.Lock()
        self._routes = self._scan()
        self._backends: dict[Path, _Backend] = {}

    @property
    def schema_file(self) -> Path | None:
        """``crm.yaml`` (or ``.yml``/``.json``) when the site declares entities."""
        for name in SCHEMA_FILES:
            path = self.root / name
            if path.is_file():
                return path
        return None

    @property
    def instance_dir(self) -> Path:
        """``SITE_DIR/instance``: the default store and the secret key (gitignored)."""
        return self.root / "instance"

    def default_store_url(self) -> str:
        """``sqlite:///SITE_DIR/instance/crm.db`` (the instance folder is created when missing)."""
        from ..cli_store import site_store_path  # the one definition, shared with the CLI

        path = site_store_path(self.root)
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"

    @property
    def seed_file(self) -> Path | None:
        """``seed.yaml`` (or ``.json``) with demo data, when present."""
        for name in ("seed.yaml", "seed.yml", "seed.json"):
            path = self.root / name
            if path.is_file():
                return path
        return None

    # --- routing --------------------------------------------------------------------------

    def _scan(self) -> dict[str, PageRoute]:
        found: dict[str, dict[str, Path]] = {}
        for dirpath, dirnames, filenames in os.walk(self.pages_dir):
            dirnames[:] = sorted(d for d in dirnames if _SEGMENT.match(d))
            rel_dir = Path(dirpath).relative_to(self.pages_dir)
            for name in filenames:
                stem, ext = os.path.splitext(name)
                if ext not in (".html", ".py") or not _SEGMENT.match(stem):
                    continue
                parts = [*rel_dir.parts, stem]
                if stem == "index":
                    url = "/" + "".join(p + "/" for p in parts[:-1])
                else:
                    url = "/" + "/".join(parts)
                found.setdefault(url, {})[ext] = Path(dirpath) / name
        routes = {}
        for url, files in found.items():
            html = files.get(".html")
            template = None if html is None else html.relative_to(self.pages_dir).as_posix()
            routes[url] = PageRoute(
                url=url,
                template=None if template is None else f"pages/{template}",
                backend=files.get(".py"),
            )
        return routes

    def route(self, path: str) -> PageRoute | None:
        """The page for a URL path (``/weight/checkin``, ``/``, ``/dir/``), or None."""
        if self.reload:
            # Development: pick up new and deleted pages without a restart.
            self._routes = self._scan()
        return self._routes.get(path)

    @property
    def urls(self) -> list[str]:
        """Every routed URL path, sorted."""
        return sorted(self._routes)

    # --- backends -------------------------------------------------------------------------

    def is_backend(self, path: Path) -> bool:
        """True when ``path`` is the backend of a page (on disk now, not as cached)."""
        return any(route.backend == path for route in self._scan().values())

    def forget(self, path: Path) -> None:
        """Drop the cached backend module of ``path`` (the next `backend` call imports it
        again, whatever its modification time says): for the reload watcher, which knows a
        file changed even when its mtime did not (attack11)."""
        with self._lock:
            self._backends.pop(path, None)

    def backend(self, path: Path) -> ModuleType:
        """The backend module at ``path`` (cached; re-imported in debug when it changed)."""
        cached = self._backends.get(path)
        if cached is not None and not self.reload:
            return cached.module
        mtime = path.stat().st_mtime
        if cached is not None and cached.mtime == mtime:
            return cached.module
        with self._lock:
            cached = self._backends.get(path)
            if cached is not None and cached.mtime == mtime:
                return cached.module
            module = self._import(path)
            self._backends[path] = _Backend(module, mtime)
            return module

    def _import(self, path: Path) -> ModuleType:
        # A name unique per site and file, so two sites (or two pages called index.py) never
        # share a sys.modules slot.
        rel = path.relative_to(self.pages_dir).with_suffix("").as_posix()
        digest = hashlib.sha1(str(self.root).encode()).hexdigest()[:10]
        name = f"crm_site_{digest}_" + re.sub(r"[^A-Za-z0-9_]", "_", rel.replace("/", "__"))
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load page backend {str(path)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            # Compiled from the source every time, not through __pycache__: bytecode is
            # matched by whole-second mtime and size, so an edit of the same length within
            # a second (serve --reload) would run the old code. This also leaves no
            # __pycache__ folders in the site.
            code = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
            exec(code, module.__dict__)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        if not callable(getattr(module, "handle", None)):
            raise TypeError(
                f"page backend {str(path)!r} must define handle(request, page); it defines "
                f"{', '.join(n for n in vars(module) if not n.startswith('_')) or 'nothing'}"
            )
        return module
