"""Hostile posts reach the archive's pages harmless, through `listserv serve`."""

from __future__ import annotations

import quopri
from email.header import Header
from html.parser import HTMLParser
from pathlib import Path

from archivekit import archived, forum, get, mail, post_ids, web_site
from helpers import listserv, query, running_server, send_mail, wait_until

CORPUS = Path(__file__).parent.parent / "mail"
OUR_TAGS = {"html", "head", "meta", "title", "link", "body", "header", "main", "footer", "nav",
            "article", "section", "h1", "h2", "h3", "p", "a", "ul", "ol", "li", "span", "pre",
            "div", "br", "blockquote", "b", "i", "em", "strong", "code", "hr", "table",
            "tbody", "thead", "tr", "td", "th", "u", "abbr", "h4"}


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def assert_harmless(page: str) -> None:
    """Only known tags, no handlers, no styles, links only to http(s) or our pages."""
    parser = Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag in OUR_TAGS, (tag, attrs)
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name, value)
            assert name != "style", (tag, value)
            if name in ("href", "src", "action"):
                scheme = value.split(":", 1)[0].lower() if ":" in value.split("/")[0] else ""
                assert scheme in ("", "http", "https"), (tag, name, value)
        if tag == "meta":
            assert attrs.get("http-equiv", "").lower() != "refresh"
    lowered = page.lower()
    for bad in ("<script", "javascript:", "data:text", "expression(", "<base", "<form",
                "<svg", "<iframe", "<img", "<object", "evil.example.net/frame"):
        assert bad not in lowered, bad


GMAIL_HTML = """<div dir="ltr">Seeds <b>for all</b>.
<a href="jav&#x09;ascript:alert(1)">tab entity</a>
<a href="java\u200bscript:alert(2)">zero width</a>
<a href="&#106;&#97;vascript:alert(3)">decimal entities</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCg0KTwvc2NyaXB0Pg==">data url</a>
<a href="https://example.org/seeds">a good link</a>
<base href="https://evil.example.net/">
<div style="width: expression(alert(5))">css expression</div>
<svg><script>alert(6)</script><a xlink:href="javascript:alert(7)">svg link</a></svg>
<math><mtext><table><mglyph><style><img src=x onerror=alert(8)>
<meta http-equiv="refresh" content="0;url=https://evil.example.net/">
<form action="https://evil.example.net/"><input name="p"></form>
<p onmouseover="alert(9)">handler</p>
</div>"""


def gmail(subject: str, text: str, html: str, message_id: str,
          sender: str = "Ana <ana@example.org>") -> bytes:
    """multipart/alternative, quoted-printable, CRLF: as Gmail sends it."""
    encoded = Header(subject, "utf-8").encode() if not subject.isascii() or len(subject) > 70 \
        else subject
    qp_text = quopri.encodestring(text.encode()).decode()
    qp_html = quopri.encodestring(html.encode()).decode()
    boundary = "000000000000a1b2c3d4e5f6"
    return (f"MIME-Version: 1.0\r\nFrom: {sender}\r\nDate: Wed, 2 Dec 2026 10:00:00 +0100\r\n"
            f"Message-ID: {message_id}\r\nSubject: {encoded}\r\nTo: peace@lists.example.org\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f"--{boundary}\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp_text}\r\n"
            f"--{boundary}\r\nContent-Type: text/html; charset=\"UTF-8\"\r\n"
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp_html}\r\n"
            f"--{boundary}--\r\n").replace("\r\n", "\n").replace("\n", "\r\n").encode()


def test_hostile_html_headers_and_charsets_come_out_harmless_on_every_page(tmp_path, sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder, members=("ana@example.org", "ben@example.net", "eve@example.org"))
    posts = [
        (CORPUS / "html-only-hostile.eml").read_bytes(),
        gmail("Semillas para todos", "Seeds for all.", GMAIL_HTML, "<g1@mail.gmail.com>"),
        gmail("Á" * 5000, "A subject of five thousand characters.", "<p>long</p>",
              "<g2@mail.gmail.com>"),
        mail("Hello", "Markup in the name.", sender='"<script>alert(1)</script> Eve" '
             "<eve@example.org>", message_id="<e1@example.org>").encode(),
        (CORPUS / "charset-unknown.eml").read_bytes(),
        mail("{{ config }} {% for x in range(10**9) %}", "{{ ''.__class__.__mro__ }} "
             "{% include '/etc/passwd' %}", message_id="<j1@example.org>").encode(),
    ]
    senders = ["ana@example.org", "ana@example.org", "ana@example.org", "eve@example.org",
               "ana@example.org", "ana@example.org"]
    with running_server(folder) as server:
        for sender, data in zip(senders, posts):
            send_mail(server.port, sender, ["peace@lists.example.org"], data)
        wait_until(lambda: query(folder, "SELECT id FROM holds"), what="the unknown charset held")
        for (hold,) in query(folder, "SELECT id FROM holds"):  # a facilitator lets it through
            listserv("held", "approve", str(hold), site=folder)
        archived(folder, len(posts))
        ids = post_ids(folder)
        assert len(ids) == len(posts)
        pages = {}
        for post_id in ids:
            status, headers, body = get(web, f"/archive/peace/{post_id}.html")
            assert status == 200
            assert "script-src" not in headers["Content-Security-Policy"]
            pages[post_id] = body.decode()
        (month,) = query(folder, "SELECT DISTINCT month FROM archive_posts")
        listing = [get(web, f"/archive/peace/{month[0]}.html")[2].decode(),
                   get(web, "/archive/peace/index.html")[2].decode(),
                   *(get(web, f"/archive/peace/t{i}.html")[2].decode() for i in ids)]
    for page in [*pages.values(), *listing]:
        assert_harmless(page)
    hostile, seeds, long, eve, klingon, jinja = (pages[i] for i in ids)
    assert "Harvest festival" in hostile and "Bring seeds to share." in hostile
    assert 'href="https://example.org/seeds"' in seeds and "for all" in seeds
    title = long.split("<title>")[1].split("</title>")[0]
    assert 250 < len(title) < 400 and title.startswith("Á" * 100)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Eve" in eve
    assert "eve@example.org" not in eve
    assert "nuqneH" in klingon
    assert "{{ config }} {% for x in range(10**9) %}" in jinja.replace("&#39;", "'")
    assert "{{ &#39;&#39;.__class__.__mro__ }}" in jinja


def test_a_thread_500_deep_is_one_thread_on_one_page(tmp_path, sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    import smtplib
    with running_server(folder) as server:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as client:
            for n in range(500):
                headers = ""
                if n:
                    refs = " ".join(f"<d{k}@example.org>" for k in range(max(0, n - 20), n))
                    headers = f"In-Reply-To: <d{n - 1}@example.org>\nReferences: {refs}\n"
                client.sendmail("ana@example.org", ["peace@lists.example.org"],
                                mail("Re: " * min(n, 1) + "Deep", f"Reply {n}.",
                                     message_id=f"<d{n}@example.org>", headers=headers)
                                .encode())
        archived(folder, 500, timeout=120)
        threads = query(folder, "SELECT thread_id, count(*), max(depth) FROM archive_posts "
                        "GROUP BY thread_id")
        (thread_id, count, depth), = threads
        status, _, body = get(web, f"/archive/peace/t{thread_id}.html")
    assert (count, depth) == (500, 499)
    page = body.decode()
    assert status == 200 and page.count("<article") == 500
    assert page.index("Reply 0.") < page.index("Reply 250.") < page.index("Reply 499.")
    assert 'class="d12"' in page  # indentation stops growing
