"""Ordinary mail is ordinary: LF line ends, UTF-8 headers, and the limits of
what is held (NUL, a lone CR in the headers), through a running server."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import smtplib
import socket
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import pytest
from helpers import Server, listserv, make_site, query, running_sink, wait_until

DOMAIN = "lists.example.org"
POST = f"peace@{DOMAIN}"
SENT = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    with running_sink() as sink:
        site = make_site(tmp_path_factory.mktemp("ordinary"), sink)
        listserv("forum", "create", "peace", "--title", "Paix", "--path", "thematic",
                 "--language", "fr", "--facilitator", "fac@example.org", site=site)
        for address in ("ana@example.org", "ben@example.org", "josé@exemple.fr"):
            listserv("member", "add", "peace", address, "--preconfirmed", site=site)
        server = Server(site).start()
        try:
            yield site, sink, server
        finally:
            output = server.stop()
            assert "Traceback" not in output, output[-3000:]


def thunderbird_post(subject: str, text: str, sender: str = "Ana Souza <ana@example.org>"):
    """A message as Thunderbird writes it: quoted-printable UTF-8, format=flowed."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = POST
    message["Subject"] = subject
    message["Date"] = format_datetime(SENT)
    message["Message-ID"] = make_msgid(domain="example.org")
    message["User-Agent"] = "Mozilla Thunderbird"
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    message.replace_header("Content-Type", 'text/plain; charset=UTF-8; format=flowed')
    return message


def post_outcome(site, header_id: str | None = None) -> tuple[str, str]:
    """The post's status and reason once handled; without `header_id`, the post of
    the last message received (an unreadable message has no Message-ID of its own)."""
    if header_id is None:
        column, value = "message_id", query(site, "SELECT max(id) FROM messages")[0][0]
    else:
        column, value = "header_id", header_id

    def settled():
        rows = query(site, f"SELECT status FROM posts WHERE {column} = ?", (value,))
        return rows and rows[0][0] not in ("new", "hold", "approved")
    wait_until(settled, what=f"the post {value} to be handled")
    return query(site, f"SELECT status, reason FROM posts WHERE {column} = ?", (value,))[0]


def copy_to(sink, address: str, header_id: str):
    def found():
        return [c for c in sink.caught if address in c.rcpt_tos
                and f"<{header_id}>".encode() in c.data]
    wait_until(found, what=f"a copy of {header_id} to {address}")
    return found()[0]


def test_lf_only_mail_from_smtplib_is_normalised_and_distributed(served):
    site, sink, server = served
    message = thunderbird_post("Réunion à Dakar", "Bonjour à tous,\n\nLa réunion aura lieu "
                               "jeudi.\n.\n..deux points\nAna\n")
    raw = message.as_bytes()  # LF line ends, as Python and sendmail-style tools write them
    assert b"\r\n" not in raw
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        assert client.sendmail("ana@example.org", [POST], raw) == {}
    header_id = message["Message-ID"].strip("<>")
    assert post_outcome(site, header_id)[0] == "distributed"
    copy = copy_to(sink, "ben@example.org", header_id)
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", copy.data), "a bare line end in the copy"
    body = copy.message.get_body().get_content()
    assert "La réunion aura lieu jeudi." in body
    assert "\n.\n..deux points\n" in body.replace("\r\n", "\n"), body  # dot-stuffing undone
    assert str(copy.message["Subject"]) == "[peace] Réunion à Dakar"


def test_lf_only_mail_with_a_lone_cr_in_a_header_is_held_with_the_reason(served):
    site, sink, server = served
    raw = (b"From: Ana <ana@example.org>\nTo: peace@lists.example.org\n"
           b"Subject: Hello\rBcc: victim@example.net\nMessage-ID: <lone-cr@example.org>\n"
           b"\nHello.\n")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.sendmail("ana@example.org", [POST], raw)
    status, reason = post_outcome(site)
    assert status == "held" and "bare CR inside the headers" in reason
    assert "victim@example.net" not in sink.recipients()


@pytest.mark.parametrize("encoding", ["8bit", "base64"])
def test_a_nul_in_a_body_is_held_with_the_reason(served, encoding):
    site, sink, server = served
    text = b"Le chiffre avant le NUL \x00 et apres.\r\n"
    body = base64.encodebytes(text).replace(b"\n", b"\r\n") if encoding == "base64" else text
    header_id = f"nul-{encoding}@example.org"  # unreadable: the hold does not use it
    raw = (f"From: Ana <ana@example.org>\r\nTo: {POST}\r\nSubject: Chiffres\r\n"
           f"Message-ID: <{header_id}>\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\n"
           f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.sendmail("ana@example.org", [POST], raw)
    status, reason = post_outcome(site)
    assert status == "held" and "NUL" in reason, reason
    held = json.loads(listserv("held", "list", "--json", site=site).stdout)
    assert any("NUL" in row["reason"] for row in held)


def test_a_utf8_from_header_parses_and_the_member_posts(served):
    site, sink, server = served
    message = thunderbird_post("Olá", "Saudações de São Paulo.\n",
                               sender="José <josé@exemple.fr>")
    raw = message.as_bytes(policy=email.policy.SMTPUTF8)  # raw UTF-8 From (RFC 6532)
    assert "josé@exemple.fr".encode() in raw
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.ehlo()
        assert client.has_extn("smtputf8")
        client.sendmail("josé@exemple.fr", [POST], raw, mail_options=["SMTPUTF8"])
    header_id = message["Message-ID"].strip("<>")
    assert post_outcome(site, header_id)[0] == "distributed"
    assert query(site, "SELECT sender FROM posts WHERE header_id = ?",
                 (header_id,))[0][0] == "josé@exemple.fr"
    copy_to(sink, "ben@example.org", header_id)


def talk(port: int, *lines: bytes) -> list[bytes]:
    """Send SMTP lines one by one; the reply to each (the greeting first)."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        reader = conn.makefile("rb")
        replies.append(reader.readline())
        for line in lines:
            conn.sendall(line + b"\r\n")
            reply = reader.readline()
            while reply[3:4] == b"-":
                reply = reader.readline()
            replies.append(reply)
    return replies


def test_non_ascii_envelope_addresses_without_smtputf8_get_553(served):
    site, sink, server = served
    replies = talk(server.port, b"EHLO client.example.org",
                   "MAIL FROM:<josé@exemple.fr>".encode(),
                   b"MAIL FROM:<ana@example.org>",
                   "RCPT TO:<paix-café@lists.example.org>".encode(), b"QUIT")
    assert replies[2].startswith(b"553 5.6.7"), replies
    assert replies[3].startswith(b"250"), replies
    assert replies[4].startswith(b"553 5.6.7"), replies
    with_utf8 = talk(server.port, b"EHLO client.example.org",
                     "MAIL FROM:<josé@exemple.fr> SMTPUTF8".encode(), b"QUIT")
    assert with_utf8[2].startswith(b"250"), with_utf8


def test_unreadable_mail_to_whatsnew_reaches_the_secretariat_with_the_reason(served):
    site, sink, server = served
    raw = (b"From: Ana <ana@example.org>\r\nTo: whatsnew@lists.example.org\r\n"
           b"Subject: Our well\rBcc: victim@example.net\r\n\r\nWe dug a well.\r\n")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
        client.sendmail("ana@example.org", [f"whatsnew@{DOMAIN}"], raw)
    (notice,) = sink.wait_for_recipient("secretariat@example.org", timeout=20)
    text = notice.get_body().get_content()
    assert "whatsnew@lists.example.org" in text and "bare CR" in text
    (attached,) = list(notice.iter_attachments())
    assert attached.get_content() == raw
    assert "victim@example.net" not in sink.recipients()


@pytest.mark.parametrize("args", [
    ("forum", "create", "water", "--title", "Water\r\nBcc: victim@example.net",
     "--path", "thematic"),
    ("forum", "edit", "peace", "--title", "Paix\nX-Injected: yes"),
    ("forum", "edit", "peace", "--archive-url", "https://a.example.org/\r\nBcc: x@y.org"),
    ("member", "add", "peace", "carla@example.org", "--name", "Carla\rBcc: victim@example.net",
     "--preconfirmed"),
    ("member", "add", "peace", "dora@example.org", "--region", "Sahel\nX: y", "--preconfirmed"),
])
def test_the_cli_refuses_line_breaks_in_values_that_reach_a_header(served, args):
    site, sink, server = served
    result = listserv(*args, site=site, check=False)
    assert result.returncode == 1, result
    assert "one line" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert query(site, "SELECT count(*) FROM forums WHERE title LIKE '%Bcc%' "
                 "OR title LIKE '%X-Injected%' OR archive_url LIKE '%Bcc%'") == [(0,)]
    assert query(site, "SELECT count(*) FROM members WHERE address IN "
                 "('carla@example.org', 'dora@example.org')") == [(0,)]


def test_a_csv_import_refuses_a_name_with_a_line_break_and_names_the_line(served, tmp_path):
    site, sink, server = served
    csv_file = tmp_path / "members.csv"
    csv_file.write_text('address,name\r\neve@example.org,Eve\r\n'
                        'finn@example.org,"Finn\r\nBcc: victim@example.net"\r\n')
    result = listserv("member", "import", "peace", str(csv_file), site=site, check=False)
    assert re.search(r"line \d+: a member's name must be on one line", result.stderr), result
    addresses = {row[0] for row in query(site, "SELECT address FROM members")}
    assert "eve@example.org" in addresses and "finn@example.org" not in addresses
