"""The web listener serves the archive folder and nothing else, and attachments
only as downloads."""

from __future__ import annotations

import base64

from archivekit import archived, forum, get, post_ids, web_site
from helpers import running_server, send_mail

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
HTML = b"<html><script>alert(document.cookie)</script></html>"


def outlook(attachments: list[tuple[str, str, bytes]]) -> str:
    """A multipart/mixed post with base64 attachments, as Outlook sends it."""
    boundary = "_004_DB9PR01MB1234example_"
    parts = [f"--{boundary}\nContent-Type: text/plain; charset=\"iso-8859-1\"\n"
             f"Content-Transfer-Encoding: quoted-printable\n\nThe plan, attached. R=E9gion Sahel.\n"]
    for name, kind, data in attachments:
        encoded = base64.encodebytes(data).decode()
        parts.append(f"--{boundary}\nContent-Type: {kind}; name=\"{name}\"\n"
                     f"Content-Description: {name}\nContent-Disposition: attachment; "
                     f"filename=\"{name}\"; size={len(data)}\n"
                     f"Content-Transfer-Encoding: base64\n\n{encoded}\n")
    return ("From: Ana Souza <ana@example.org>\nTo: \"peace@lists.example.org\" "
            "<peace@lists.example.org>\nSubject: The plan\nThread-Topic: The plan\n"
            "Date: Wed, 2 Dec 2026 09:00:00 +0000\nMessage-ID: "
            "<DB9PR01MB1234.eurprd01.prod.outlook.com>\nAccept-Language: pt-BR, en-US\n"
            "Content-Language: pt-BR\nX-MS-Has-Attach: yes\nMIME-Version: 1.0\n"
            f"Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\n"
            + "".join(parts) + f"--{boundary}--\n")


def test_attachments_are_downloads_of_a_safe_type_and_nothing_outside_is_served(tmp_path,
                                                                                 sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  outlook([("plan.svg", "image/svg+xml", SVG),
                           ("../../evil page.html", "text/html", HTML)]))
        archived(folder, 1)
        (post_id,) = post_ids(folder)
        page = get(web, f"/archive/peace/{post_id}.html")[2].decode()
        assert "Région Sahel" in page
        svg = get(web, f"/archive/peace/att/{post_id}-1-plan.svg")
        html = get(web, f"/archive/peace/att/{post_id}-2-evil_page.html")
        assert f'href="att/{post_id}-1-plan.svg"' in page
        assert f'href="att/{post_id}-2-evil_page.html"' in page
        outside = [get(web, path)[0] for path in (
            "/archive/../data/listserv.db", "/archive/%2e%2e/listserv.db",
            "/archive/peace/..%2f..%2flistserv.db", "/archive/peace/%2e%2e%2f%2e%2e%2flistserv.db",
            "/archive/.style.css.tmp", "/archive/peace/att/", "/archive//etc/passwd",
            "/archive/peace/\\..\\..\\listserv.db", "/archive/%00", "/archive/peace/att/x%00.svg",
            "/etc/passwd", "/archive/" + "a" * 5000)]
        search = get(web, "/archive/search?q=" + "%22" * 3000)
    for answer, data in ((svg, SVG), (html, HTML)):
        status, headers, body = answer
        assert status == 200 and body == data
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"].startswith("attachment;")
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert outside == [404] * len(outside)
    assert search[0] == 200 and b"give one or more words" in search[2]
