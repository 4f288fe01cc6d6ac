"""STARTTLS on intake, with certificates the tests make and clients that verify
them: offered only when configured, required when asked, re-read on SIGHUP
without dropping a session, and hostile handshakes."""

from __future__ import annotations

import shutil
import signal
import smtplib
import socket
import ssl
import time

import pytest
from helpers import Server, listserv, query, running_sink, wait_until, write_site
from tlskit import make_ca, make_certs, needs_openssl

pytestmark = needs_openssl
DOMAIN = "lists.example.org"
POST = (f"From: Ana <ana@example.org>\r\nTo: peace@{DOMAIN}\r\nSubject: Secret water\r\n"
        f"Message-ID: <tls-{{n}}@example.org>\r\n\r\nSent over TLS.\r\n")


@pytest.fixture
def sink():
    with running_sink() as caught:
        yield caught


def tls_site(tmp_path, sink, smtp: str = "") -> tuple:
    """A site whose [smtp] tls_cert/tls_key are a certificate signed by a test CA."""
    certs = make_certs(tmp_path / "site" / "tls")
    site = write_site(tmp_path / "site", sink.port, extra=f'[smtp]\ntls_cert = "tls/server.pem"\n'
                      f'tls_key = "tls/server.key"\n{smtp}')
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=site)
    return site, certs


def verifying(ca) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))  # chain and host name checked
    return context


def post(n: int) -> bytes:
    return POST.replace("{n}", str(n)).encode()


def test_starttls_is_not_offered_without_a_certificate(tmp_path, sink):
    site = write_site(tmp_path / "site", sink.port)
    server = Server(site).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo()
            assert not client.has_extn("starttls")
    finally:
        server.stop()


def test_a_client_verifies_the_certificate_and_sends_over_tls(tmp_path, sink):
    site, certs = tls_site(tmp_path, sink)
    server = Server(site).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=verifying(certs.ca))
            assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
            client.ehlo()
            assert not client.has_extn("starttls")  # not offered again inside TLS
            assert client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], post(1)) == {}
        other_ca, _ = make_ca(tmp_path / "other", "Another CA")
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            with pytest.raises(ssl.SSLCertVerificationError):  # the check is real
                client.starttls(context=verifying(other_ca))
    finally:
        server.stop()
    assert query(site, "SELECT count(*) FROM messages") == [(1,)]


def test_require_tls_refuses_mail_until_tls_is_started(tmp_path, sink):
    site, certs = tls_site(tmp_path, sink, "require_tls = true\n")
    server = Server(site).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.ehlo()
            code, text = client.mail("ana@example.org")
            assert code == 530 and b"STARTTLS" in text
            client.starttls(context=verifying(certs.ca))
            client.ehlo()
            assert client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], post(2)) == {}
    finally:
        server.stop()


def test_starttls_twice_gets_503_and_the_session_goes_on(tmp_path, sink):
    site, certs = tls_site(tmp_path, sink)
    server = Server(site).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.starttls(context=verifying(certs.ca))
            client.ehlo()
            code, text = client.docmd("STARTTLS")
            assert code == 503 and b"already active" in text
            assert client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], post(3)) == {}
    finally:
        server.stop()


def test_a_client_certificate_that_does_not_verify_is_no_reason_to_refuse_mail(
        tmp_path, sink):
    site, certs = tls_site(tmp_path, sink)
    own = make_certs(tmp_path / "client", host="mail.example.net", stem="client")
    context = verifying(certs.ca)
    context.load_cert_chain(str(own.cert), str(own.key))  # signed by a CA we never heard of
    server = Server(site).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            client.starttls(context=context)
            assert client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], post(4)) == {}
    finally:
        server.stop()


def test_a_handshake_that_stops_half_way_is_dropped_and_blocks_no_one(tmp_path, sink):
    site, certs = tls_site(tmp_path, sink, 'command_timeout = "2s"\n')
    server = Server(site).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            reader = conn.makefile("rb")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"EHLO stuck.example.net\r\n")
            while reader.readline()[3:4] == b"-":
                pass
            conn.sendall(b"STARTTLS\r\n")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello cut short
            started = time.monotonic()
            with smtplib.SMTP("127.0.0.1", server.port, timeout=5) as client:  # others go on
                client.starttls(context=verifying(certs.ca))
                assert client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], post(5)) == {}
            conn.settimeout(8)
            while conn.recv(4096):
                pass  # whatever it says, the server must close the connection
            assert time.monotonic() - started < 6
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
            reader = conn.makefile("rb")
            reader.readline()
            conn.sendall(b"STARTTLS\r\n")
            assert reader.readline().startswith(b"220")
            conn.sendall(b"this is not TLS at all\r\n" * 50)  # a handshake that fails
            conn.settimeout(8)
            try:
                while conn.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    finally:
        output = server.stop()
    assert "Traceback" not in output, output[-2000:]


def test_sighup_rereads_the_certificate_without_dropping_a_session(tmp_path, sink):
    site, first = tls_site(tmp_path, sink)
    second = make_certs(tmp_path / "renewed", ca=make_ca(tmp_path / "renewed", "Renewed CA"))
    server = Server(site).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as old:
            old.starttls(context=verifying(first.ca))
            old.ehlo()
            assert old.mail("ana@example.org")[0] == 250
            assert old.rcpt(f"peace@{DOMAIN}")[0] == 250
            (site / "tls" / "broken.pem").write_text("not a certificate\n")
            shutil.copy(site / "tls" / "broken.pem", site / "tls" / "server.pem")
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "TLS certificate not reloaded" in server.output(),
                       what="the failed reload to be logged")
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                client.starttls(context=verifying(first.ca))  # the old one stays
            shutil.copy(second.cert, site / "tls" / "server.pem")
            shutil.copy(second.key, site / "tls" / "server.key")
            server.process.send_signal(signal.SIGHUP)
            wait_until(lambda: "TLS certificate reloaded" in server.output(),
                       what="the reload to be logged")
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                client.starttls(context=verifying(second.ca))
                assert client.sendmail("ana@example.org", [f"peace@{DOMAIN}"], post(6)) == {}
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                with pytest.raises(ssl.SSLCertVerificationError):
                    client.starttls(context=verifying(first.ca))
            code, _ = old.data(post(7))  # the session begun before the reload ends well
            assert code == 250
    finally:
        output = server.stop()
    assert "Traceback" not in output
    assert query(site, "SELECT count(*) FROM messages") == [(2,)]


def test_a_certificate_that_cannot_be_loaded_stops_serve_with_one_line(tmp_path, sink):
    site, certs = tls_site(tmp_path, sink)
    (site / "tls" / "server.key").write_text("garbage\n")
    result = listserv("serve", "--listen", "127.0.0.1:0", site=site, check=False)
    assert result.returncode == 1
    assert "[smtp] tls_cert" in result.stderr and "cannot be loaded" in result.stderr
    assert "Traceback" not in result.stderr
