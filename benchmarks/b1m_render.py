"""B1m: a page reading 30 fields of 6 entities through a layout and imported macros (issue 14).

The page (``page.html``) ``{% extends %}`` a layout that reads 5 fields of ``profile`` in its
header, ``{% import %}``s ``macros.html`` whose two macros each read 5 fields of one entity
(``contact``, ``subscription``), and reads 5 fields of each of three more entities itself, with
``GetCrmField`` calls (both spellings, keyword and one-dict styles) and ``crm_field`` filters.
Templates come from a `FileSystemLoader` (as the page server's do, with Jinja's auto-reload
checks) in a SandboxedEnvironment; SQLite file with 1,000 customers, 4 entries per entity each.

Baseline, in the same run: *the same templates* given the values by a hand-written prefetch —
one SELECT per entity with sqlite3, JSON-decoding each row and keeping every key's newest value
(`benchmarks.b1_render.prefetch`) — with ``GetCrmField`` and ``crm_field`` answered from that
prefetch by trivial functions. The prefetch is handed to them the way a hand-written Flask page
would (a per-request `ContextVar`, like ``flask.g``): macros imported without context do not see
the render's variables. Ratio = our time per render / baseline; target ≤ 1.0× (issue 14).

``--profile`` prints a cProfile of our side instead.
"""

from __future__ import annotations

import random
import sys
import tempfile
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, pass_context
from jinja2.sandbox import SandboxedEnvironment

from benchmarks.b1_render import prefetch
from benchmarks.harness import interleave, quick_default, raw_connection, result
from crm_templates import Crm, CrmExtension, Entry, open_store
from crm_templates.ids import new_id, utc_now

TARGET = 1.0
ENTITIES = {
    slug: [f"{slug[:3]}{i}" for i in range(5)]
    for slug in ("profile", "contact", "subscription", "weight-tracker", "preferences", "activity")
}
ENTRIES_PER_ENTITY = 4


def _get(slug: str, key: str, style: int) -> str:
    """One read in one of the styles a page author writes."""
    if style == 0:
        return f"{{{{ GetCrmField(slug='{slug}', fieldKey='{key}') }}}}"
    if style == 1:
        return f"{{{{ getCrmField({{'slug': '{slug}', 'fieldKey': '{key}'}}) }}}}"
    return f"{{{{ '{slug}' | crm_field('{key}') }}}}"


def _rows(slug: str) -> str:
    return "\n".join(
        f"    <dt>{key}</dt><dd>{_get(slug, key, n % 3)}</dd>"
        for n, key in enumerate(ENTITIES[slug])
    )


def templates() -> dict[str, str]:
    """The three template files: layout, macros, page."""
    layout = f"""<!doctype html>
<html><head><title>{{% block title %}}Dashboard{{% endblock %}}</title></head><body>
<header><dl>
{_rows("profile")}
</dl></header>
<main>{{% block content %}}{{% endblock %}}</main>
</body></html>
"""
    macros = f"""{{% macro contact_card() -%}}
<section class="contact"><dl>
{_rows("contact")}
</dl></section>
{{%- endmacro %}}
{{% macro subscription_box() -%}}
<section class="subscription"><dl>
{_rows("subscription")}
</dl></section>
{{%- endmacro %}}
"""
    page = f"""{{% extends "layout.html" %}}
{{% import "macros.html" as cards %}}
{{% block title %}}Your dashboard{{% endblock %}}
{{% block content %}}
<section class="tracker"><dl>
{_rows("weight-tracker")}
</dl></section>
<section class="preferences"><dl>
{_rows("preferences")}
</dl></section>
<section class="activity"><dl>
{_rows("activity")}
</dl></section>
{{{{ cards.contact_card() }}}}
{{{{ cards.subscription_box() }}}}
{{% endblock %}}
"""
    return {"layout.html": layout, "macros.html": macros, "page.html": page}


def populate(crm: Crm, customers: int, seed: int = 1) -> list[str]:
    """Customers with several entries per entity, each entry holding some of the keys."""
    rng = random.Random(seed)
    for slug, keys in ENTITIES.items():
        crm.ensure_entity(slug=slug, entityMode="data", fields=[{"key": k} for k in keys])
    ids = [f"cus_{i:05d}" for i in range(customers)]
    batch: list[Entry] = []
    for cid in ids:
        for slug, keys in ENTITIES.items():
            for _ in range(ENTRIES_PER_ENTITY):
                chosen = rng.sample(keys, k=rng.randint(2, len(keys)))
                values: dict[str, Any] = {k: f"{k}-{rng.random():.6f}" for k in chosen}
                now = utc_now()
                batch.append(
                    Entry(new_id(), slug, "customer", cid, values, "", None, None, now, now)
                )
        if len(batch) >= 2000:
            crm.store.insert_entries(batch)
            batch = []
    crm.store.insert_entries(batch)
    return ids


_PREFETCHED: ContextVar[dict[str, dict[str, Any]]] = ContextVar("b1m_prefetched")


def baseline_env(folder: str) -> SandboxedEnvironment:
    """The same templates, their CRM names answered from the hand-written prefetch."""

    @pass_context
    def get_field(context: Any, options: Any = None, /, **kwargs: Any) -> Any:
        o = options or kwargs
        return _PREFETCHED.get()[o["slug"]].get(o["fieldKey"])

    @pass_context
    def field_filter(context: Any, slug: str, key: str) -> Any:
        return _PREFETCHED.get()[slug].get(key)

    env = SandboxedEnvironment(loader=FileSystemLoader(folder), autoescape=True)
    env.globals["GetCrmField"] = env.globals["getCrmField"] = get_field
    env.filters["crm_field"] = field_filter
    return env


def run(quick: bool | None = None, profile: bool = False) -> dict[str, Any]:
    quick = quick_default() if quick is None else quick
    customers, renders, rounds = (200, 100, 9) if quick else (1000, 150, 31)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "templates"
        folder.mkdir()
        for name, source in templates().items():
            (folder / name).write_text(source, encoding="utf-8")
        path = str(Path(tmp) / "b1m.db")
        crm = Crm(open_store(f"sqlite:///{path}"))
        ids = populate(crm, customers)
        order = random.Random(2).choices(ids, k=renders)
        conn = raw_connection(path)

        env = SandboxedEnvironment(
            loader=FileSystemLoader(str(folder)), extensions=[CrmExtension], autoescape=True
        )
        env.install_crm(crm)  # type: ignore[attr-defined]
        ours_t = env.get_template("page.html")
        same_env = baseline_env(str(folder))
        same_t = same_env.get_template("page.html")

        def fetch(cid: str) -> dict[str, dict[str, Any]]:
            return {slug: prefetch(conn, slug, cid) for slug in ENTITIES}

        def base_render(cid: str) -> str:
            token = _PREFETCHED.set(fetch(cid))
            try:
                return same_t.render(customer_id=cid)
            finally:
                _PREFETCHED.reset(token)

        # Same output from both, or the comparison means nothing.
        for cid in order[:5]:
            a = ours_t.render(customer_id=cid)
            if a != base_render(cid) or "-0." not in a:
                raise AssertionError("B1m: the pages differ; the benchmark is broken")

        def ours() -> None:
            for cid in order:
                ours_t.render(customer_id=cid)

        def base() -> None:
            for cid in order:
                base_render(cid)

        ours()  # warm both (SQLite page cache, compiled templates)
        base()
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(rounds):
                ours()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        t_ours, t_base = interleave(ours, base, rounds)
        conn.close()
        crm.close()
    ratio = t_ours / t_base
    return result(
        "B1m",
        "render 30 fields of 6 entities through a layout and imported macros vs the same "
        "templates over a one-SELECT-per-entity prefetch",
        ratio,
        f"≤ {TARGET}×",
        ratio <= TARGET,
        ours_ms_per_render=round(t_ours / renders * 1000, 3),
        baseline_ms_per_render=round(t_base / renders * 1000, 3),
    )


if __name__ == "__main__":
    r = run(quick_default() or "--quick" in sys.argv, profile="--profile" in sys.argv)
    print(r)
    print(f"B1m ratio {r['ratio']}× (target ≤ {TARGET}×): {'ok' if r['ok'] else 'MISSED'}")
