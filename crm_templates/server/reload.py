"""Live reload for ``crm-templates serve --reload`` (issue 11, item 3; ``--debug`` implies it).

The serving process keeps running; nothing is restarted, so the port, the sign-in links, the
logs, the trusted hosts and Ctrl+C behave as without ``--reload``. Two parts:

* Every request checks what it uses (`Site` with ``reload=True``, Jinja's ``auto_reload``):
  routes are rescanned (new and deleted pages), a template or page backend whose file changed
  is loaded again. What a request shows is therefore always the files on disk.
* A `SiteWatcher` thread (``watchfiles``) watches ``pages/``, ``templates/``, ``static/``,
  ``crm.yaml`` and ``seed.yaml`` and, for each change, logs one INFO line on
  ``crm_templates.reload`` (``reloaded pages/index.html``) after loading the file at once, so
  a syntax error is reported in the terminal right away (ERROR, with the line) and not only by
  the next request's error page. Files without a per-request check are applied here:
  ``crm.yaml`` is ensured again (only adding entities, fields and pipelines, as at start) and
  ``seed.yaml`` is loaded when the store is still empty (as at start).

Not watched: the ``crm_templates`` package itself, installed libraries, environment variables
and ``instance/`` — restart for those.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from flask import Flask
from jinja2 import TemplateSyntaxError
from watchfiles import Change, DefaultFilter, watch

from ..loading import ensure_schema, load_seed, store_is_empty
from .builtin_pages import forget_templates
from .site import SCHEMA_FILES
from .state import ServerState

log = logging.getLogger("crm_templates.reload")

WATCHED_FOLDERS = ("pages", "templates", "static")
SEED_FILES = ("seed.yaml", "seed.yml", "seed.json")
# Compiled when they change, to report syntax errors at once; other files are only logged.
_TEMPLATE_SUFFIXES = (".html", ".htm", ".xml", ".svg", ".txt", ".j2", ".jinja")


class SiteFilter(DefaultFilter):
    """The files of a site that `SiteWatcher` reacts to: anything under ``pages/``,
    ``templates/`` and ``static/``, and the schema and seed files at the top; never
    ``instance/`` (the store writes there), hidden files, editors' swap and backup files."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __call__(self, change: Change, path: str) -> bool:
        """True when a change of ``path`` matters to the site."""
        if not super().__call__(change, path):
            return False
        parts = relative_parts(self.root, path)
        if not parts or any(part.startswith(".") for part in parts):
            return False
        if len(parts) == 1:
            return parts[0] in SCHEMA_FILES or parts[0] in SEED_FILES
        return parts[0] in WATCHED_FOLDERS


def relative_parts(root: Path, path: str | Path) -> tuple[str, ...]:
    """The parts of ``path`` below ``root`` (empty when it is not below it)."""
    try:
        return Path(path).relative_to(root).parts
    except ValueError:
        try:
            return Path(path).resolve().relative_to(root).parts
        except (ValueError, OSError):
            return ()


def _reason(exc: BaseException) -> str:
    """A one-line account of a load error, with the line when there is one."""
    if isinstance(exc, TemplateSyntaxError):
        return f"line {exc.lineno}: {exc.message}"
    if isinstance(exc, SyntaxError):
        return f"line {exc.lineno}: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


class SiteWatcher:
    """Watches one app's site and applies changes while it serves (see the module docstring).

    ``start()`` turns on the per-request checks and returns once the watcher sees changes;
    ``stop()`` ends the thread (at most a few tenths of a second later). `apply` handles one
    batch of ``watchfiles`` changes and can be called directly.
    """

    def __init__(self, app: Flask) -> None:
        server = app.extensions["crm"]
        assert isinstance(server, ServerState)
        self.app = app
        self.server = server
        self.root = server.site.root
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Check files per request and start watching; waits up to ``timeout`` seconds for the
        watcher to be in place, so no change made after this returns is missed."""
        self.server.site.reload = True
        self.server.env.auto_reload = True
        self.app.jinja_env.auto_reload = True  # the server's own templates (crm/…)
        self._thread = threading.Thread(target=self._run, name="crm-templates-reload", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            log.warning(
                "the file watcher was not ready after %.0f s; changes may be missed", timeout
            )

    def stop(self) -> None:
        """Stop watching (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            # rust_timeout + yield_on_timeout: the first (empty) batch says the watch is set up.
            for changes in watch(
                self.root,
                watch_filter=SiteFilter(self.root),
                debounce=800,
                stop_event=self._stop,
                rust_timeout=250,
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                self._ready.set()
                if changes:
                    self.apply(changes)
        except Exception:
            log.exception("the file watcher stopped; restart the server to pick up changes")
        finally:
            self._ready.set()

    def apply(self, changes: Iterable[tuple[Any, str]]) -> None:
        """Handle one batch of changes: load and log each changed file (``reloaded …``,
        ``removed …``, or an ERROR naming the file and the problem), then ensure ``crm.yaml``
        and seed an empty store if those changed. Never raises: the server keeps serving."""
        schema = seed = False
        for path in sorted({Path(p) for _, p in changes}):
            parts = relative_parts(self.root, path)
            if not parts:
                continue
            name = "/".join(parts)
            if len(parts) == 1:
                schema = schema or name in SCHEMA_FILES
                seed = seed or name in SEED_FILES
                continue
            if not path.is_file():
                # Routes are rescanned per request: a removed page answers 404 from now on.
                log.info("removed %s", name)
                continue
            try:
                self._load(path, parts)
            except Exception as exc:
                log.error(
                    "%s, %s; requests that use it answer with an error until it is fixed",
                    name,
                    _reason(exc),
                    exc_info=None if isinstance(exc, (SyntaxError, TemplateSyntaxError)) else exc,
                )
                continue
            log.info("reloaded %s", name)
        if schema:
            self._ensure_schema()
        if seed:
            self._seed()

    def _load(self, path: Path, parts: tuple[str, ...]) -> None:
        """Load a changed page file the way the next request will (raises what it would).

        The cached module or compiled templates are dropped first: the watcher saw a change,
        and the per-request checks compare modification times only, which a copy that keeps
        them (``cp -p``, ``rsync -t``, a restored backup) or a coarse file system leaves
        equal (attack11)."""
        folder = parts[0]
        site, env = self.server.site, self.server.env
        if folder == "pages" and path.suffix == ".py":
            site.forget(path)
            if site.is_backend(path):
                site.backend(path)
        elif folder in ("pages", "templates"):
            forget_templates(env)  # any file a template may include, whatever its suffix
            if path.suffix not in _TEMPLATE_SUFFIXES:
                return
            # Page templates load as "pages/<path>", the rest by their path in templates/.
            env.get_template("/".join(parts) if folder == "pages" else "/".join(parts[1:]))

    def _ensure_schema(self) -> None:
        file = self.server.site.schema_file
        if file is None:
            log.info("removed the schema file; the store keeps its entities")
            return
        if not self.app.config.get("CRM_ENSURE_SCHEMA", True):
            log.info("%s changed; not ensured (CRM_ENSURE_SCHEMA is off)", file.name)
            return
        try:
            results = ensure_schema(self.server.crm, file)
        except Exception as exc:
            log.error(
                "%s: %s; the entities stay as they were until it is fixed", file.name, _reason(exc)
            )
            return
        added = [
            f"{kind} {result.get('slug')}.{key}"
            for result in results
            for kind, keys in (("field", "fields_added"), ("pipeline", "pipelines_added"))
            if not result.get("created")
            for key in result.get(keys) or ()
        ]
        added += [f"entity {r.get('slug')}" for r in results if r.get("created")]
        if added:
            log.info("reloaded %s: added %s", file.name, ", ".join(added))
        else:
            log.info(
                "reloaded %s: nothing to add (existing entities, fields and pipelines are "
                "never changed from the file, as at start)",
                file.name,
            )

    def _seed(self) -> None:
        file = self.server.site.seed_file
        if file is None or not self.app.config.get("CRM_SEED", True):
            return
        crm = self.server.crm
        try:
            if not store_is_empty(crm):
                log.info(
                    "%s changed; the store has data, so it is not loaded again "
                    "(crm-templates seed --force adds it)",
                    file.name,
                )
                return
            counts = load_seed(crm, file)
        except Exception as exc:
            log.error("%s: %s; nothing more was seeded", file.name, _reason(exc))
            return
        log.info(
            "reloaded %s: seeded %d customers and %d entries",
            file.name,
            counts["customers"],
            counts["entries"],
        )
