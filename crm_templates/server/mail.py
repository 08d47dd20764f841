"""Sign-in links by email (issue 11, item 7): ``CRM_MAIL_URL`` turns on an SMTP mailer.

Without ``CRM_MAIL_URL`` the default mailer logs the link (``crm_templates.mail``, INFO) — the
development set-up. With it, `init_mail` installs an `SmtpMailer` as ``CRM_MAILER`` (a mailer
given in code as ``CRM_MAILER`` wins). The URL, read once at start-up (`parse_mail_url`)::

    smtps://USER:PASSWORD@HOST[:465]              TLS from the first byte ("SSL")
    smtp://USER:PASSWORD@HOST[:587]?starttls=true plain connection upgraded with STARTTLS
    smtp://HOST[:25]                              no TLS: a relay on this machine or network

User name and password are percent-encoded (``%40`` for ``@``). Query parameters: ``starttls``
(``true``/``false``, ``smtp://`` only), ``from`` (the sender; ``CRM_MAIL_FROM`` wins over it;
without either, a user name that is an address), ``timeout`` (seconds per connection,
default 10). A password over a connection without TLS is refused unless the host is a
loopback address. TLS certificates are verified against the system's CAs (``SSL_CERT_FILE``
adds a private CA, OpenSSL's own variable).

The message (`sign_in_message`) has a plain-text and an HTML part rendered from
``crm/mail/sign_in.txt`` and ``crm/mail/sign_in.html`` (autoescaped), both naming the site
(``CRM_SITE_NAME``, default: the host name of the link). Header values never carry a
line break, a control character or an RFC 2047 encoded word (``=?utf-8?q?…?=``, which the
email package would decode into a line break): the sender is refused at start-up, the site
name is neutralised, and the mailer refuses such a To or Subject. `deliver` sends it: a failure is
logged without the link or its token, and the visitor sees the same "check your email" page as
for a sent mail (the answer never tells whether an address is known or reachable).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from flask import Flask, current_app, render_template

from ..errors import CrmError
from .state import Mailer, MailMessage

log = logging.getLogger("crm_templates.mail")

DEFAULT_PORTS = {"smtps": 465, "starttls": 587, "none": 25}
_PARAMETERS = ("starttls", "from", "timeout")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
# Anything that could end a header line or hide in one: a header value with one of these is
# refused, never folded or stripped (header injection through an address or a site name).
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")
# The start of an RFC 2047 encoded word. The email package decodes such words in a header value
# it is given (``=?utf-8?q?a=0D=0ABcc:_x?=`` becomes a line break and a Bcc header once the
# message is written), so a value holding one is refused too (attack11).
_ENCODED_WORD = re.compile(r"=\?[^?]*\?[bBqQ]\?")


def _unsafe_header(value: str) -> bool:
    """Whether ``value`` could add or hide header lines: a control character or line separator,
    or an RFC 2047 encoded word the email package would decode."""
    return bool(_CONTROL.search(value) or _ENCODED_WORD.search(value))


class MailError(CrmError):
    """A message could not be sent (the SMTP server refused, was unreachable, or a header
    was unsafe). The message never holds the password; callers log it without the link."""


@dataclass(frozen=True)
class SmtpSettings:
    """A parsed ``CRM_MAIL_URL``: where and how to send. ``security`` is ``"smtps"`` (TLS from
    the start), ``"starttls"`` or ``"none"``; ``timeout`` is in seconds."""

    host: str
    port: int
    security: str
    sender: str  # the From header, e.g. "Shop <no-reply@shop.example>"
    envelope_from: str  # its bare address, for MAIL FROM
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    def __str__(self) -> str:
        """The URL with the password left out: ``smtp://user@host:587 (STARTTLS)``."""
        scheme = "smtps" if self.security == "smtps" else "smtp"
        user = f"{quote(self.username, safe='')}@" if self.username else ""
        kind = {"smtps": "TLS", "starttls": "STARTTLS", "none": "no TLS"}[self.security]
        return f"{scheme}://{user}{self.host}:{self.port} ({kind})"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secret(url: str) -> str:
    """What may be the password in ``url``, for keeping it out of messages: the parsed
    password when the URL's authority has an ``@``; else, when a ``:`` in it is followed by an
    ``@`` later on (a password holding an unencoded ``/ ? #`` ends the authority early), all
    from that ``:`` to the last ``@`` — generous on purpose; else empty."""
    rest = url.partition("://")[2] or url
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        netloc = ""
    if "@" in netloc:
        return netloc.rpartition("@")[0].partition(":")[2]
    userinfo = rest[: max(rest.rfind("@"), 0)]
    colon = userinfo.find(":")
    return userinfo[colon + 1 :] if colon >= 0 else ""


def _redacted(url: str) -> str:
    """``url`` with `_secret` replaced by ``***``, for error messages."""
    secret = _secret(url)
    if not secret:
        return url
    at = url.find(f":{secret}@")
    if at < 0:  # not expected; hide all before the last "@" rather than risk showing it
        return url.partition("://")[0] + "://***" + url[url.rfind("@") :]
    return url[:at] + ":***@" + url[at + len(secret) + 2 :]


def _overlaps(text: str, url: str) -> bool:
    """Whether ``text`` shows any part of `_secret` (case-insensitively: a value may have been
    lower-cased)."""
    secret = _secret(url).lower()
    low = text.lower()
    pieces = [p for p in re.split(r"[/?#@&=;:]", secret) if len(p) >= 2]
    return bool(secret) and (low in secret or any(p in low for p in pieces))


def _echo(text: str, url: str) -> str:
    """``repr(text)`` for a message, or ``'***'`` when ``text`` (a query parameter's name or
    value, which a password with an unencoded ``?`` turns into) overlaps `_secret`."""
    return "'***'" if _overlaps(text, url) else repr(text)


def check_sender(value: str, where: str) -> tuple[str, str]:
    """``(From header, bare address)`` for a sender like ``Shop <no-reply@shop.example>`` or
    ``no-reply@shop.example``; ValueError naming ``where`` when it is not one address."""
    if _CONTROL.search(value):
        raise ValueError(f"{where} must be one line; got {value!r}")
    if _ENCODED_WORD.search(value):
        raise ValueError(
            f"{where} must not contain an encoded word (=?charset?q?…?=); write the name in "
            f"plain Unicode; got {value!r}"
        )
    found = getaddresses([value])
    address = found[0][1] if len(found) == 1 else ""
    local, at, domain = address.rpartition("@")
    if not (local and at and domain):
        raise ValueError(
            f"{where} must be one email address, like 'Shop <no-reply@shop.example>'; got {value!r}"
        )
    try:
        EmailMessage()["From"] = value.strip()  # what every mail will do: fail now, not then
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{where} is not a usable From header ({exc}); got {value!r}") from None
    return value.strip(), address


_HINT = "like smtps://user:password@mail.example or smtp://mail.example:587?starttls=true"


def parse_mail_url(url: str, sender: str | None = None) -> SmtpSettings:
    """``CRM_MAIL_URL`` (see the module docstring) and ``CRM_MAIL_FROM`` as `SmtpSettings`.

    Raises ValueError naming the problem (the password is never echoed): another scheme, no
    host, a bad port, an unknown or repeated parameter, ``starttls`` on ``smtps://``, a password
    without TLS to a host that is not loopback, no usable sender. A password with an
    unencoded ``/ ? # @`` confuses the URL parser; a message that would show any part of it is
    replaced by one asking to percent-encode them (attack11: such messages echoed it).
    """
    if not isinstance(url, str) or _CONTROL.search(url) or " " in url:
        raise ValueError("CRM_MAIL_URL must be one URL without spaces, like smtps://HOST")
    return _parse_mail_url(url, sender)


def _parse_mail_url(url: str, sender: str | None) -> SmtpSettings:
    shown = _redacted(url)
    hint = _HINT
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urllib's reason may quote part of the password ("... as 'pa'"): not shown then.
        reason = str(exc)
        if _overlaps(reason, url):
            reason = "percent-encode / ? # @ : in the user name and password (%2F %3F %23 %40 %3A)"
        raise ValueError(f"CRM_MAIL_URL {shown!r} is not a valid URL ({reason}): {hint}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise ValueError(f"CRM_MAIL_URL must start with smtp:// or smtps://; got {shown!r}")
    if not parts.hostname:
        raise ValueError(f"CRM_MAIL_URL has no host name: {shown!r}: {hint}")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"CRM_MAIL_URL must not have a path or fragment: {shown!r}")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMETERS:
            raise ValueError(
                f"CRM_MAIL_URL has an unknown parameter {_echo(key, url)}; known: "
                f"{', '.join(_PARAMETERS)}"
            )
        if key in params:
            raise ValueError(f"CRM_MAIL_URL gives the parameter {_echo(key, url)} twice")
        params[key] = value
    security = "smtps" if scheme == "smtps" else "none"
    starttls = params.get("starttls", "").lower()
    if starttls:
        if starttls not in _TRUE + _FALSE:
            raise ValueError(
                f"CRM_MAIL_URL: starttls must be true or false; got "
                f"{_echo(params['starttls'], url)}"
            )
        if scheme == "smtps" and starttls in _TRUE:
            raise ValueError(
                "CRM_MAIL_URL: smtps:// is TLS from the start; starttls=true is for smtp://"
            )
        if starttls in _TRUE:
            security = "starttls"
    timeout = 10.0
    if "timeout" in params:
        try:
            timeout = float(params["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout <= 600:
            raise ValueError(
                f"CRM_MAIL_URL: timeout must be seconds between 0 and 600; "
                f"got {_echo(params['timeout'], url)}"
            )
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    host = parts.hostname
    if password and security == "none" and not _is_loopback(host):
        raise ValueError(
            f"CRM_MAIL_URL {shown!r} would send the password unencrypted to {host!r}: use "
            "smtps:// or add ?starttls=true (a relay without TLS is only accepted on loopback)"
        )
    if sender:
        header, address = check_sender(sender, "CRM_MAIL_FROM")
    elif params.get("from"):
        try:
            header, address = check_sender(params["from"], "CRM_MAIL_URL's from parameter")
        except ValueError:
            if _echo(params["from"], url) == repr(params["from"]):
                raise
            raise ValueError(
                "CRM_MAIL_URL's from parameter must be one email address; got '***' (percent-"
                "encode / ? # @ : in the user name and password: %2F %3F %23 %40 %3A)"
            ) from None
    elif username and "@" in username:
        header, address = check_sender(username, "CRM_MAIL_URL's user name")
    else:
        raise ValueError(
            "sign-in mails need a sender: set CRM_MAIL_FROM (like 'Shop <no-reply@shop.example>') "
            "or add ?from=... to CRM_MAIL_URL"
        )
    return SmtpSettings(
        host=host,
        port=port or DEFAULT_PORTS[security],
        security=security,
        sender=header,
        envelope_from=address,
        username=username,
        password=password,
        timeout=timeout,
    )


class SmtpMailer:
    """A mailer (``CRM_MAILER``) sending each `MailMessage` through one SMTP connection of its
    own (``smtplib``; TLS verified with the system's CAs). Raises `MailError` on any failure."""

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings

    def __str__(self) -> str:
        return str(self.settings)

    def build(self, message: MailMessage) -> EmailMessage:
        """The `EmailMessage` for ``message``: plain text, plus an HTML alternative when the
        message has one. Raises `MailError` for a header value with a line break or another
        control character."""
        for name, value in (("To", message.to), ("Subject", message.subject)):
            if _unsafe_header(value):
                raise MailError(f"refused to send: the {name} header would contain {value!r}")
        settings = self.settings
        email = EmailMessage()
        email["From"] = settings.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(usegmt=True)
        email["Message-ID"] = make_msgid(domain=settings.envelope_from.rpartition("@")[2])
        # Out-of-office replies and the like should not answer an automatic message (RFC 3834).
        email["Auto-Submitted"] = "auto-generated"
        email.set_content(message.body)
        if message.html is not None:
            email.add_alternative(message.html, subtype="html")
        return email

    def __call__(self, message: MailMessage) -> None:
        """Send ``message`` (connect, TLS, log in, send, quit); `MailError` on failure."""
        email = self.build(message)
        settings = self.settings
        context = ssl.create_default_context()
        try:
            client: smtplib.SMTP
            if settings.security == "smtps":
                client = smtplib.SMTP_SSL(
                    settings.host, settings.port, timeout=settings.timeout, context=context
                )
            else:
                client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
            with client:
                if settings.security == "starttls":
                    client.starttls(context=context)
                if settings.username:
                    client.login(settings.username, settings.password or "")
                client.send_message(email, settings.envelope_from, [message.to])
        except (smtplib.SMTPException, OSError) as exc:
            raise MailError(f"{settings}: {type(exc).__name__}: {exc}") from exc


def init_mail(app: Flask) -> None:
    """Install an `SmtpMailer` as ``CRM_MAILER`` when ``CRM_MAIL_URL`` is set and no mailer
    was given in code. Raises ValueError for a bad URL or sender (at start-up, not at the
    first sign-in)."""
    url = app.config.get("CRM_MAIL_URL")
    if url and app.config.get("CRM_MAILER") is None:
        settings = parse_mail_url(url, app.config.get("CRM_MAIL_FROM") or None)
        app.config["CRM_MAILER"] = SmtpMailer(settings)


def site_name(link: str) -> str:
    """``CRM_SITE_NAME``, or the host name of ``link``; control characters become spaces and
    an encoded word's ``=?`` becomes ``= ?`` (the name goes into the Subject header)."""
    name = current_app.config.get("CRM_SITE_NAME") or urlsplit(link).hostname or "this site"
    text = " ".join(_CONTROL.sub(" ", str(name)).split())
    while _ENCODED_WORD.search(text):
        text = text.replace("=?", "= ?")
    return text


def sign_in_message(to: str, link: str, minutes: int) -> MailMessage:
    """The sign-in mail for ``to``: subject, plain text and HTML naming the site (rendered
    from ``crm/mail/sign_in.txt`` and ``.html`` in the current app; the HTML autoescaped)."""
    name = site_name(link)
    values: dict[str, Any] = {"site_name": name, "email": to, "link": link, "minutes": minutes}
    return MailMessage(
        to=to,
        subject=f"Sign in to {name}",
        body=render_template("crm/mail/sign_in.txt", **values),
        link=link,
        html=render_template("crm/mail/sign_in.html", **values),
    )


def deliver(mailer: Mailer, message: MailMessage) -> bool:
    """Hand ``message`` to ``mailer``; True when it took it. A failure is logged (ERROR on
    ``crm_templates.mail``) with the address and the reason, never the link or its token."""
    try:
        mailer(message)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
        token = message.link.partition("token=")[2].partition("&")[0]
        for secret in (message.link, token):
            if secret:
                reason = reason.replace(secret, "REDACTED")
        log.error("could not send the sign-in email to %s: %s", message.to, reason)
        return False
    if not isinstance(mailer, SmtpMailer):
        return True
    log.info("sent a sign-in email to %s via %s", message.to, mailer)
    return True
