"""Outbound TLS and SMTP AUTH to the smarthost, against an aiosmtpd sink on
loopback that offers STARTTLS (or TLS from the start) and asks for a login:
mail goes through when all is right, and is deferred with the reason shown
in `listserv queue` when TLS or the login fails."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading

import pytest
from aiosmtpd.smtp import SMTP, AuthResult
from helpers import Server, SinkHandler, listserv, wait_until, write_site
from tlskit import make_ca, make_certs, needs_openssl

pytestmark = needs_openssl
USER, PASSWORD = "lists@example.org", "correct horse battery"


class SecureSink:
    """A smarthost on 127.0.0.1: STARTTLS (or implicit TLS) and AUTH PLAIN/LOGIN."""

    def __init__(self, certs, implicit: bool = False, offer_tls: bool = True):
        self.handler = SinkHandler()
        self.logins: list[str] = []
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(certs.cert), str(certs.key))
        self.context, self.implicit, self.offer_tls = context, implicit, offer_tls
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login.decode() == USER and auth_data.password.decode() == PASSWORD
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok, handled=False)  # a failure answers 535

    def start(self) -> SecureSink:
        self.thread.start()

        async def start():
            tls = self.context if self.offer_tls and not self.implicit else None
            self.server = await self.loop.create_server(
                lambda: SMTP(self.handler, hostname="smarthost.test", tls_context=tls,
                             authenticator=self.authenticate, auth_required=True,
                             auth_require_tls=not self.implicit,  # TLS from the start
                             enable_SMTPUTF8=True),
                "127.0.0.1", 0, ssl=self.context if self.implicit else None)
            return self.server.sockets[0].getsockname()[1]
        self.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def stop(self) -> None:
        async def stop():
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def caught(self):
        with self.handler.lock:
            return list(self.handler.caught)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("smarthost-certs"))


def secured_site(tmp_path, port: int, ca, tls: str = "starttls", password: str = PASSWORD,
                 own_process: bool = True):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "smarthost-ca.pem").write_bytes(ca.read_bytes())
    (folder / "smarthost.pass").write_text(password + "\n")
    write_site(folder, port, extra="")
    text = (folder / "listserv.toml").read_text().replace(
        '[delivery]\n', f'[delivery]\ntls = "{tls}"\nca_file = "smarthost-ca.pem"\n'
        f'user = "{USER}"\npassword_file = "smarthost.pass"\n'
        f'own_process = {"true" if own_process else "false"}\n')
    (folder / "listserv.toml").write_text(text)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=folder)
    return folder


def invite(folder) -> None:
    """Make the site send one message: a confirmation request to carla."""
    listserv("member", "add", "peace", "carla@example.org", site=folder)


def queue_reasons(folder) -> str:
    return json.dumps(json.loads(listserv("queue", "--json", site=folder).stdout))


@pytest.mark.parametrize("own_process", [True, False])
def test_mail_goes_through_starttls_with_a_verified_certificate_and_a_login(
        tmp_path, certs, own_process):
    sink = SecureSink(certs).start()
    try:
        folder = secured_site(tmp_path, sink.port, certs.ca, own_process=own_process)
        server = Server(folder).start()
        invite(folder)
        wait_until(lambda: any("carla@example.org" in c.rcpt_tos for c in sink.caught),
                   what="the confirmation request at the smarthost")
        server.stop()
    finally:
        sink.stop()
    assert sink.logins and set(sink.logins) == {USER}


def test_implicit_tls_on_port_465_style_connections(tmp_path, certs):
    sink = SecureSink(certs, implicit=True).start()
    try:
        folder = secured_site(tmp_path, sink.port, certs.ca, tls="tls")
        server = Server(folder).start()
        invite(folder)
        wait_until(lambda: sink.caught, what="mail over implicit TLS")
        server.stop()
    finally:
        sink.stop()
    assert sink.logins == [USER]


def deferred_with(folder, words: str) -> None:
    wait_until(lambda: words in queue_reasons(folder), timeout=30,
               what=f"the queue to show '{words}'")


def test_a_wrong_password_defers_with_the_reason_in_the_queue(tmp_path, certs):
    sink = SecureSink(certs).start()
    try:
        folder = secured_site(tmp_path, sink.port, certs.ca, password="wrong")
        server = Server(folder).start()
        invite(folder)
        deferred_with(folder, "refused the login as lists@example.org")
        server.stop()
    finally:
        sink.stop()
    assert sink.caught == [] and sink.logins == []
    assert "deferred" in queue_reasons(folder) or "pending" in queue_reasons(folder)


def test_a_certificate_from_an_unknown_ca_defers_and_no_password_is_sent(tmp_path, certs):
    other_ca, _ = make_ca(tmp_path / "other", "Another CA")
    sink = SecureSink(certs).start()
    try:
        folder = secured_site(tmp_path, sink.port, other_ca)
        server = Server(folder).start()
        invite(folder)
        deferred_with(folder, "certificate verify failed")
        server.stop()
    finally:
        sink.stop()
    assert sink.caught == [] and sink.logins == []


def test_a_smarthost_without_starttls_is_not_used_when_tls_is_required(tmp_path, certs):
    sink = SecureSink(certs, offer_tls=False).start()
    try:
        folder = secured_site(tmp_path, sink.port, certs.ca)
        server = Server(folder).start()
        invite(folder)
        deferred_with(folder, "TLS with 127.0.0.1")
        server.stop()
    finally:
        sink.stop()
    assert sink.caught == [] and sink.logins == []


def test_a_login_without_tls_is_a_config_error(tmp_path, certs):
    folder = tmp_path / "site"
    write_site(folder, 2525, extra="")
    text = (folder / "listserv.toml").read_text().replace(
        "[delivery]\n", f'[delivery]\nuser = "{USER}"\npassword_file = "pass"\n')
    (folder / "listserv.toml").write_text(text)
    result = listserv("status", site=folder, check=False)
    assert result.returncode == 1 and "[delivery] user needs [delivery] tls" in result.stderr
    assert "Traceback" not in result.stderr
