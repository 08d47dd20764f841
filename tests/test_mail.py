"""Sign-in links by email (issue 11, item 7) through a real SMTP server on loopback (aiosmtpd):
the link arrives in a plain-text and an HTML part naming the site and signs in; every customer
gets only their own link; AUTH, STARTTLS and SMTPS with verified certificates; a refusing or
missing server gets the neutral answer and a log line without the token; hostile names are
escaped and header injection is refused; one run through the real ``serve`` process."""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from bs4 import BeautifulSoup

from crm_templates.server.mail import MailError, SmtpMailer, parse_mail_url
from crm_templates.server.state import MailMessage
from tests.test_serve import ROOT, SAMPLES, Served, request_sign_in
from tests.test_server_security import build, make_site, open_link, path_of

# The test servers accept AUTH without STARTTLS on loopback on purpose (plain-AUTH and SMTPS runs).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
SENDER = "Test Shop <no-reply@shop.example>"
USER, PASSWORD = "mailer@shop.example", "p@ss:word/1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Inbox:
    """What an SMTP server received: envelopes (sender, recipients) and parsed messages."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    refuse: str | None = None  # an SMTP reply for DATA, like "550 no thanks"
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        self.arrived.set()
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [m for _, _, m in self.received]


@dataclass
class SmtpServer:
    """A running aiosmtpd server and what it received."""

    port: int
    inbox: Inbox

    def url(self, scheme: str = "smtp", credentials: str = "", query: str = "") -> str:
        return f"{scheme}://{credentials}127.0.0.1:{self.port}{query}"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with openssl: (certificate, key)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def smtp_server(certificate: tuple[Path, Path]) -> Iterator[Any]:
    """Starts aiosmtpd servers on loopback: ``start(auth=…, tls=…, ssl=…)``; stopped afterwards."""
    started: list[Controller] = []

    def start(
        *, auth: bool = False, starttls: bool = False, implicit_tls: bool = False
    ) -> SmtpServer:
        inbox = Inbox()
        options: dict[str, Any] = {}
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*map(str, certificate))
        if auth:

            def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):  # type: ignore[no-untyped-def]
                ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
                    USER.encode(),
                    PASSWORD.encode(),
                )
                # handled=False: aiosmtpd answers 535 itself (else it answers nothing).
                return AuthResult(success=ok, handled=False)

            options.update(authenticator=authenticator, auth_required=True)
            # aiosmtpd refuses AUTH on a plain connection unless told otherwise, and does not
            # know that an implicit-TLS connection is encrypted.
            options["auth_require_tls"] = starttls
        if starttls:
            options.update(tls_context=context, require_starttls=True)
        if implicit_tls:
            options.update(ssl_context=context)
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return SmtpServer(port, inbox)

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The small test site of test_server_security."""
    return make_site(tmp_path / "site")


@pytest.fixture
def make(site: Path) -> Iterator[Any]:
    """Builds apps over the site with the given settings; closes them afterwards."""
    apps: list[Any] = []

    def factory(**config: Any) -> Any:
        config.setdefault("CRM_MAIL_FROM", SENDER)
        app = build(site, **config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["crm"].close()


def ask(client: Any, email_address: str, **headers: str) -> Any:
    """Load the sign-in form and POST it for ``email_address``, both with ``headers``."""
    form = client.get("/auth/sign-in", headers=headers).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form
    return client.post(
        "/auth/sign-in",
        data={"csrf_token": token.group(1), "email": email_address},
        headers=headers,
    )


def parts(message: EmailMessage) -> tuple[str, str]:
    """The plain-text and HTML parts of a message."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None, message
    return text.get_content(), html.get_content()


def link_in(text: str) -> str:
    """The one sign-in link in a text."""
    links = set(re.findall(r"https?://[^\s\"<>]+/auth/verify\?token=[\w.-]+", text))
    assert len(links) == 1, text
    return links.pop()


def home(client: Any) -> str:
    """The test site's index: ``home:<customer id>:<signed in>:<email>``."""
    return str(client.get("/").get_data(as_text=True))


# --- the link arrives and signs in ------------------------------------------------------


def test_sign_in_link_arrives_in_both_parts_and_signs_in(
    make: Any, smtp_server: Any, caplog: Any
) -> None:
    server = smtp_server()
    app = make(CRM_MAIL_URL=server.url(), CRM_SITE_NAME="Test Shop")
    client = app.test_client()
    caplog.set_level("INFO", logger="crm_templates")
    response = ask(client, "Ann@Example.com")
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)

    [(sender, recipients, message)] = server.inbox.received
    assert sender == "no-reply@shop.example"
    assert recipients == ["ann@example.com"]
    assert message["To"] == "ann@example.com"
    assert message["From"] == SENDER
    assert message["Subject"] == "Sign in to Test Shop"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"].endswith("@shop.example>")
    text, html = parts(message)
    link = link_in(text)
    assert link.startswith("http://localhost/auth/verify?token=")
    assert "Test Shop" in text and "15 minutes" in text
    soup = BeautifulSoup(html, "html.parser")
    assert [a["href"] for a in soup.find_all("a")] == [link]
    assert "Sign in to Test Shop" in soup.get_text()
    # Mailed, not logged: the log names the address and the server, never the link.
    assert app.extensions["crm"].outbox == type(app.extensions["crm"].outbox)()
    assert "sent a sign-in email to ann@example.com via smtp://127.0.0.1:" in caplog.text
    assert link.split("token=")[1] not in caplog.text

    assert open_link(client, link).status_code == 303
    assert home(client).endswith(":True:ann@example.com")


def test_two_customers_get_only_their_own_links(make: Any, smtp_server: Any) -> None:
    server = smtp_server()
    app = make(CRM_MAIL_URL=server.url())
    ann, bob = app.test_client(), app.test_client()
    assert ask(ann, "ann@example.com").status_code == 200
    assert ask(bob, "bob@example.com").status_code == 200
    by_recipient = {tuple(rcpt): message for _, rcpt, message in server.inbox.received}
    assert set(by_recipient) == {("ann@example.com",), ("bob@example.com",)}
    links = {}
    for (address,), message in by_recipient.items():
        text, html = parts(message)
        links[address] = link_in(text)
        assert link_in(html) == links[address]
        assert message["To"] == address
    assert links["ann@example.com"] != links["bob@example.com"]
    # Each link names its own address on the confirmation page, not the other one.
    page = app.test_client().get(path_of(links["bob@example.com"])).get_data(as_text=True)
    assert "bob@example.com" in page and "ann@example.com" not in page
    for client, address in ((ann, "ann@example.com"), (bob, "bob@example.com")):
        assert open_link(client, links[address]).status_code == 303
        assert home(client).endswith(f":True:{address}")


def test_links_come_from_the_base_url_not_the_request(make: Any, smtp_server: Any) -> None:
    server = smtp_server()
    app = make(CRM_MAIL_URL=server.url(), TRUSTED_HOSTS=None, CRM_BASE_URL="https://shop.example")
    response = ask(
        app.test_client(),
        "ann@example.com",
        Host="attacker.example",
        **{"X-Forwarded-Host": "evil.example"},
    )
    assert response.status_code == 200
    [message] = server.inbox.messages()
    text, html = parts(message)
    assert link_in(text).startswith("https://shop.example/auth/verify?token=")
    assert message["Subject"] == "Sign in to shop.example"  # no CRM_SITE_NAME: the link's host
    for part in (text, html, str(message)):
        assert "attacker" not in part and "evil" not in part


# --- AUTH and TLS --------------------------------------------------------------------------


def test_auth_with_user_name_and_password(make: Any, smtp_server: Any, caplog: Any) -> None:
    server = smtp_server(auth=True)
    credentials = "mailer%40shop.example:p%40ss%3Aword%2F1@"
    app = make(CRM_MAIL_URL=server.url(credentials=credentials), CRM_MAIL_FROM=None)
    assert ask(app.test_client(), "ann@example.com").status_code == 200
    [(sender, _, message)] = server.inbox.received
    assert sender == USER  # no CRM_MAIL_FROM: the user name is the sender
    assert link_in(parts(message)[0])

    wrong = make(CRM_MAIL_URL=server.url(credentials="mailer%40shop.example:nope@"))
    caplog.set_level("ERROR", logger="crm_templates.mail")
    response = ask(wrong.test_client(), "bob@example.com")
    assert response.status_code == 200
    assert "Check your email" in response.get_data(as_text=True)
    assert len(server.inbox.received) == 1
    assert "could not send the sign-in email to bob@example.com" in caplog.text
    assert "SMTPAuthenticationError" in caplog.text
    assert "nope" not in caplog.text and "p@ss" not in caplog.text


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
def test_tls_modes_verify_the_certificate(
    make: Any, smtp_server: Any, certificate: Any, monkeypatch: Any, caplog: Any, mode: str
) -> None:
    server = smtp_server(auth=True, starttls=mode == "starttls", implicit_tls=mode == "smtps")
    credentials = "mailer%40shop.example:p%40ss%3Aword%2F1@"
    url = (
        server.url("smtp", credentials, "?starttls=true")
        if mode == "starttls"
        else server.url("smtps", credentials)
    )
    app = make(CRM_MAIL_URL=url)
    caplog.set_level("ERROR", logger="crm_templates.mail")
    # The test certificate is nobody's CA yet: verification fails, nothing is sent.
    monkeypatch.setenv("SSL_CERT_FILE", str(Path(__file__)))  # a file with no certificate
    assert ask(app.test_client(), "ann@example.com").status_code == 200
    assert server.inbox.received == []
    assert "could not send the sign-in email to ann@example.com" in caplog.text
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    # Trusted through SSL_CERT_FILE (OpenSSL's variable), the mail goes out encrypted.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    assert ask(app.test_client(), "bob@example.com").status_code == 200
    [(_, recipients, message)] = server.inbox.received
    assert recipients == ["bob@example.com"]
    assert link_in(parts(message)[0])


def test_starttls_required_but_not_offered_is_a_failure(
    make: Any, smtp_server: Any, caplog: Any
) -> None:
    server = smtp_server()  # no TLS at all
    app = make(CRM_MAIL_URL=server.url(query="?starttls=true"))
    caplog.set_level("ERROR", logger="crm_templates.mail")
    assert ask(app.test_client(), "ann@example.com").status_code == 200
    assert server.inbox.received == []
    assert "STARTTLS" in caplog.text


# --- failures: the same answer, a log line without the token ----------------------------


@pytest.mark.parametrize("failure", ["refused", "unreachable"])
def test_send_failure_gives_the_neutral_answer_and_logs_without_token(
    make: Any, smtp_server: Any, caplog: Any, failure: str
) -> None:
    if failure == "refused":
        server = smtp_server()
        server.inbox.refuse = "554 5.7.1 message refused"
        url = server.url()
    else:
        url = f"smtp://127.0.0.1:{free_port()}?timeout=5"  # nothing listens there
    app = make(CRM_MAIL_URL=url)
    sent = make()  # the default mailer: the same answer when the mail did go out
    caplog.set_level("DEBUG")
    response = ask(app.test_client(), "ann@example.com")
    expected = ask(sent.test_client(), "ann@example.com")
    assert response.status_code == expected.status_code == 200
    body = response.get_data(as_text=True)
    assert body == expected.get_data(as_text=True)
    # The server's log (aiosmtpd's own, "mail.log") is not ours: read only crm_templates'.
    ours = [r for r in caplog.records if r.name.startswith("crm_templates")]
    failed = [r for r in ours if r.levelname == "ERROR"]
    assert len(failed) == 1 and failed[0].name == "crm_templates.mail"
    reason = failed[0].getMessage()
    assert "could not send the sign-in email to ann@example.com" in reason
    assert ("554" if failure == "refused" else "ConnectionRefusedError") in reason
    assert failed[0].exc_info is None
    # The only token in our log is the one the default (logging) mailer of `sent` wrote.
    text = "\n".join(r.getMessage() for r in ours)
    [token] = set(re.findall(r"token=([\w.-]+)", text))
    assert [r.name for r in ours if token in r.getMessage()] == ["crm_templates.mail"]
    assert sent.extensions["crm"].outbox[-1].link.endswith(token)


def test_a_raising_custom_mailer_gets_the_same_treatment(make: Any, caplog: Any) -> None:
    def mailer(message: MailMessage) -> None:
        raise RuntimeError(f"relay down while sending {message.link}")

    app = make(CRM_MAILER=mailer)
    caplog.set_level("ERROR", logger="crm_templates.mail")
    response = ask(app.test_client(), "ann@example.com")
    assert response.status_code == 200
    assert "could not send the sign-in email to ann@example.com" in caplog.text
    assert "RuntimeError: relay down while sending REDACTED" in caplog.text
    assert "token=" not in caplog.text


# --- escaping and header injection -----------------------------------------------------------

HOSTILE_NAME = '<script>alert(1)</script><img src=x onerror=alert(2)> & "Co"'


def test_hostile_site_name_and_address_are_escaped_in_the_html(make: Any, smtp_server: Any) -> None:
    server = smtp_server()
    app = make(CRM_MAIL_URL=server.url(), CRM_SITE_NAME=HOSTILE_NAME + "\r\nBcc: eve@example.com")
    address = "o'brien&co{x}@example.com"  # a valid address full of HTML's special characters
    assert ask(app.test_client(), address).status_code == 200
    [(_, recipients, message)] = server.inbox.received
    assert recipients == [address]
    assert message["Bcc"] is None
    # The site name's line break became a space: one Subject header, nothing injected.
    assert message.get_all("Subject") == [f"Sign in to {HOSTILE_NAME} Bcc: eve@example.com"]
    text, html = parts(message)
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("script") is None and soup.find("img") is None
    assert HOSTILE_NAME in soup.get_text()
    assert address in soup.get_text()
    assert "&lt;script&gt;" in html and "o&#39;brien&amp;co" in html
    assert HOSTILE_NAME in text  # plain text is not HTML: shown as it is


@pytest.mark.parametrize(
    "address",
    [
        "ann@example.com\r\nBcc: eve@example.com",
        "ann@example.com\nBcc: eve@example.com",
        "ann@example.com\rX: y",
    ],
)
def test_header_injection_through_the_address_is_refused(
    make: Any, smtp_server: Any, address: str
) -> None:
    server = smtp_server()
    app = make(CRM_MAIL_URL=server.url())
    response = ask(app.test_client(), address)
    assert response.status_code == 400
    assert "valid email address" in response.get_data(as_text=True)
    # The mailer refuses it too, whoever calls it.
    mailer = SmtpMailer(parse_mail_url(server.url(), SENDER))
    with pytest.raises(MailError, match="the To header would contain"):
        mailer(MailMessage(to=address, subject="s", body="b", link="http://x/"))
    with pytest.raises(MailError, match="the Subject header would contain"):
        mailer(MailMessage(to="ann@example.com", subject=address, body="b", link="http://x/"))
    assert server.inbox.received == []


# attack11: the email package decodes RFC 2047 encoded words in the values it is given, so a
# CR/LF hidden in one became a real header line once the message was written.
ENCODED_CRLF = "=?utf-8?q?a=0D=0ABcc:_eve@example.com?="
ENCODED_CRLF_B64 = "=?UTF-8?B?YQ0KQmNjOiBldmVAZXhhbXBsZS5jb20=?="


@pytest.mark.parametrize("name", [ENCODED_CRLF, "Shop " + ENCODED_CRLF_B64])
def test_an_encoded_word_in_the_site_name_injects_no_header(
    make: Any, smtp_server: Any, name: str
) -> None:
    server = smtp_server()
    app = make(CRM_MAIL_URL=server.url(), CRM_SITE_NAME=name)
    assert ask(app.test_client(), "ann@example.com").status_code == 200
    [(_, recipients, message)] = server.inbox.received
    assert recipients == ["ann@example.com"]
    assert message["Bcc"] is None
    assert not re.search(rb"^Bcc:", message.as_bytes(), re.MULTILINE | re.IGNORECASE)
    assert message.get_all("Subject") == ["Sign in to " + name.replace("=?", "= ?")]


@pytest.mark.parametrize("value", [ENCODED_CRLF, ENCODED_CRLF_B64 + "@example.com"])
def test_the_mailer_refuses_encoded_words_in_to_and_subject(smtp_server: Any, value: str) -> None:
    server = smtp_server()
    mailer = SmtpMailer(parse_mail_url(server.url(), SENDER))
    with pytest.raises(MailError, match="the To header would contain"):
        mailer(MailMessage(to=value, subject="s", body="b", link="http://x/"))
    with pytest.raises(MailError, match="the Subject header would contain"):
        mailer(MailMessage(to="ann@example.com", subject=value, body="b", link="http://x/"))
    assert server.inbox.received == []


# --- CRM_MAIL_URL itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sender", "expected"),
    [
        ("smtp://127.0.0.1", SENDER, ("127.0.0.1", 25, "none", None, "no-reply@shop.example")),
        (
            "smtp://mail.example?starttls=true",
            SENDER,
            ("mail.example", 587, "starttls", None, "no-reply@shop.example"),
        ),
        (
            "SMTPS://u%40x.example:pw@mail.example",
            None,
            ("mail.example", 465, "smtps", "u@x.example", "u@x.example"),
        ),
        (
            "smtp://u:pw@mail.example:2525?starttls=yes&from=a%40b.example",
            None,
            ("mail.example", 2525, "starttls", "u", "a@b.example"),
        ),
        (
            "smtp://u:pw@localhost:1025?from=a@b.example",
            "c@d.example",
            ("localhost", 1025, "none", "u", "c@d.example"),
        ),
        (
            "smtp://mail.example/?starttls=false&timeout=2.5",
            SENDER,
            ("mail.example", 25, "none", None, "no-reply@shop.example"),
        ),
    ],
)
def test_mail_urls(url: str, sender: str | None, expected: tuple[Any, ...]) -> None:
    settings = parse_mail_url(url, sender)
    got = (settings.host, settings.port, settings.security, settings.username)
    assert (*got, settings.envelope_from) == expected
    assert "pw" not in repr(settings) and "pw" not in str(settings)


@pytest.mark.parametrize(
    ("url", "sender", "message"),
    [
        ("http://mail.example", SENDER, "must start with smtp:// or smtps://"),
        ("smtp://", SENDER, "has no host name"),
        ("smtp://mail.example:99999", SENDER, "is not a valid URL"),
        ("smtp://mail.example/inbox", SENDER, "must not have a path"),
        ("smtp://mail.example?tls=1", SENDER, "unknown parameter 'tls'"),
        ("smtp://mail.example?starttls=maybe", SENDER, "starttls must be true or false"),
        ("smtps://mail.example?starttls=true", SENDER, "TLS from the start"),
        ("smtp://mail.example?timeout=0", SENDER, "timeout must be seconds"),
        (
            "smtp://mail.example?from=a@b.example&from=c@d.example",
            None,
            "gives the parameter 'from' twice",
        ),
        ("smtp://user:secret-pw@mail.example", SENDER, "would send the password unencrypted"),
        ("smtp://mail.example", None, "set CRM_MAIL_FROM"),
        ("smtp://user@mail.example", None, "set CRM_MAIL_FROM"),
        ("smtp://mail.example", "not an address", "CRM_MAIL_FROM must be one email address"),
        ("smtp://mail.example", "a@b.example, c@d.example", "must be one email address"),
        ("smtp://mail.example", "a@b.example\r\nBcc: e@f.example", "must be one line"),
        # attack11: accepted at start, then every mail failed (or carried a decoded header).
        (
            "smtp://mail.example",
            ENCODED_CRLF + " <a@b.example>",
            "CRM_MAIL_FROM must not contain an encoded word",
        ),
        (
            "smtp://mail.example",
            "=?utf-8?q?Shop=0D=0AX-Evil:_1?= <a@b.example>",
            "must not contain an encoded word",
        ),
        ("smtp://mail.example\r\n", SENDER, "one URL without spaces"),
    ],
)
def test_bad_mail_urls_are_refused_at_start(
    site: Path, url: str, sender: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        build(site, CRM_MAIL_URL=url, CRM_MAIL_FROM=sender)
    assert "secret-pw" not in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "smtp://user:Zq7/Xw9@mail.example",
        "smtp://user:Zq7?Xw9@mail.example",
        "smtp://user:Zq7#Xw9@mail.example",
        "smtp://user:Zq7@Xw9@mail.example",
        "smtp://user:Zq7:Xw9@mail.example",
        "smtp://user:123/Xw9@mail.example",
        "smtp://user:123?Xw9@mail.example",
        "smtp://user:123?timeout=Xw9@mail.example",
        "smtp://user:123?starttls=Xw9@mail.example",
        "smtp://user:123?from=Xw9@mail.example&from=x",
        "smtp://user:123?from=Xw9@@mail.example",
    ],
)
def test_a_password_with_unencoded_url_characters_is_never_echoed(site: Path, url: str) -> None:
    """attack11: with an unencoded / ? # @ in the password, the URL parser ends the host early
    and the refusal quoted the password (whole, or the part urllib called a port, or the part
    read as a query parameter)."""
    with pytest.raises(ValueError) as raised:
        build(site, CRM_MAIL_URL=url, CRM_MAIL_FROM=None)
    message = str(raised.value).lower()
    assert "zq7" not in message and "xw9" not in message, message
    assert "CRM_MAIL_URL" in str(raised.value)


def test_without_mail_url_the_link_is_logged_with_the_site_name(make: Any, caplog: Any) -> None:
    app = make(CRM_SITE_NAME="Test Shop")
    caplog.set_level("INFO", logger="crm_templates.mail")
    assert ask(app.test_client(), "ann@example.com").status_code == 200
    [message] = app.extensions["crm"].outbox
    assert message.subject == "Sign in to Test Shop"
    assert message.link in caplog.text
    assert message.link in message.body and "Test Shop" in (message.html or "")


# --- the real `serve` process ---------------------------------------------------------------


def test_serve_mails_sign_in_links_with_crm_mail_url(tmp_path: Path, smtp_server: Any) -> None:
    server = smtp_server()
    site = tmp_path / "site"
    shutil.copytree(SAMPLES / "weight_tracker", site, ignore=shutil.ignore_patterns("instance"))
    env = {"CRM_MAIL_URL": server.url(query="?from=no-reply%40weight.example")}
    env["CRM_SITE_NAME"] = "Weight Tracker"
    served = Served(site, tmp_path / "crm.db", env=env)
    try:
        # Printed at start-up; the reader thread may not have it yet when the port answers.
        smtp_line = re.compile(rf".*smtp://127\.0\.0\.1:{server.port}")
        assert served.wait_for(smtp_line), "\n".join(served.lines)
        request_sign_in(served, "ann@example.com")
        [(sender, recipients, message)] = server.inbox.received
        assert (sender, recipients) == ("no-reply@weight.example", ["ann@example.com"])
        assert message["Subject"] == "Sign in to Weight Tracker"
        link = link_in(parts(message)[0])
        assert link.startswith(f"http://127.0.0.1:{served.port}/auth/verify?token=")
        sent = re.compile(r".* INFO +crm_templates\.mail: sent a sign-in email to ann@example\.com")
        assert served.wait_for(sent), "\n".join(served.lines)
        assert not [line for line in served.lines if link.split("token=")[1] in line]
    finally:
        served.stop()


@pytest.mark.parametrize("command", ["serve", "render"])
def test_commands_refuse_a_bad_mail_url_in_one_line(tmp_path: Path, command: str) -> None:
    site = tmp_path / "site"
    make_site(site)
    store = tmp_path / "crm.db"
    store.touch()
    args = {
        "serve": ["serve", str(site), "--port", "0"],
        "render": ["render", "/", "--site", str(site), "--customer", "cus_x"],
    }[command]
    env = {**os.environ, "CRM_MAIL_URL": "smtp://user:hunter2@mail.example"}
    done = subprocess.run(
        [sys.executable, "-m", "crm_templates", *args, "--store", f"sqlite:///{store}"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "Error: CRM_MAIL_URL 'smtp://user:***@mail.example' would send the password" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr and "hunter2" not in done.stderr
