"""The CRM inside a Starlette or FastAPI app (issue 11, item 2; SPEC §11): `install`.

    from starlette.templating import Jinja2Templates
    from crm_templates import Crm, open_store
    from crm_templates.starlette import install

    crm = Crm(open_store("sqlite:///crm.db"))
    templates = Jinja2Templates(directory="templates")
    install(templates, crm, customer=lambda request: request.session.get("customer_id"))

    async def page(request):
        return templates.TemplateResponse(request, "page.html")   # CRM reads/writes inside

`install` adds the Jinja extension to ``templates.env`` (the app's own environment: its templates
are trusted, so it is not sandboxed) and installs ``crm`` with ``customer`` as the way to name
the current customer: it gets the ``request`` of the render context (Starlette puts it into
every ``TemplateResponse``) and returns the customer id, or None for no customer (reads answer
their empty defaults, writes are refused with the core's `MissingOptionError`). A
``customer_id`` or ``customer`` variable in the context takes precedence (SPEC §7). Each render
keeps its own read cache and customer (issue 8), also for sync endpoints in Starlette's thread
pool and for macros imported without context.

The app closes ``crm`` itself at shutdown (``crm.close()`` drains queued async writes), e.g. in
its lifespan. Starlette is not imported by this module: any object with an ``env`` attribute
holding a Jinja2 environment works (FastAPI's ``Jinja2Templates`` is Starlette's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jinja2.runtime import Context, Undefined

from .extension import CrmExtension, OnError

if TYPE_CHECKING:
    from jinja2 import Environment

    from renderers import RenderOptions

    from .service import Crm

#: ``customer(request) -> id | None``: the current customer of a request.
RequestCustomer = Callable[[Any], Any]


def install(
    templates: Any,
    crm: Crm,
    *,
    customer: RequestCustomer,
    on_error: OnError = "raise",
    render_options: RenderOptions | None = None,
) -> Environment:
    """Install ``crm`` into ``templates.env`` (a ``Jinja2Templates``), with the current
    customer taken from each render's ``request`` by ``customer(request)``.

    ``customer`` returns a customer id (``str``; an ``int`` is taken as its text) or None, and
    is not called when the context has no ``request`` (a template rendered outside a request:
    no customer then, unless the context names one). ``on_error`` and ``render_options`` are
    those of ``install_crm`` (SPEC §7). Returns the environment. Raises `TypeError` when
    ``templates`` has no Jinja environment, or ``customer`` is not callable.
    """
    from jinja2 import Environment

    env = getattr(templates, "env", None)
    if not isinstance(env, Environment):
        raise TypeError(
            "install() needs a Jinja2Templates (an object whose .env is a jinja2.Environment); "
            f"got {type(templates).__name__}"
        )
    if not callable(customer):
        raise TypeError("customer must be a callable: customer(request) -> customer id or None")

    def from_request(context: Context) -> Any:
        request = context.get("request")
        if request is None or isinstance(request, Undefined):
            return None
        return customer(request)

    if CrmExtension.identifier not in env.extensions:
        env.add_extension(CrmExtension)
    env.install_crm(  # type: ignore[attr-defined]
        crm, on_error=on_error, render_options=render_options, context_customer=from_request
    )
    return env


__all__ = ["RequestCustomer", "install"]
