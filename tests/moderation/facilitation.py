"""What the moderation tests share: a forum with facilitators, mail as people
write it, replies laid out as the common mail clients lay them out, and the
pipeline driven in-process with a chosen `now`.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

from helpers import query, wait_until  # noqa: F401 (for the moderation tests)

from listserv.delivery.engine import deliver_pending
from listserv.intake.pipeline import distribute_pending, process_received
from listserv.intake.smtp import store_incoming
from listserv.serve import wire_extensions
from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.init import init_site
from moderation.stage import moderate

DOMAIN = "lists.example.org"
FAC, FAC2 = "fac@example.org", "fac2@example.org"
MEMBERS = ("ana@example.org", "ben@example.net", "chloe@example.org")
ZOE = "zoe@example.net"  # not a member
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
LANGUAGES = ("en", "fr", "es", "pt")


def forum_site(tmp_path, sink) -> Path:
    """A site as `listserv init` makes it, delivering to the sink, with the
    forum 'peace' (two facilitators, three members). Made in-process: the
    command line itself is tested elsewhere, and this is quicker."""
    folder = tmp_path / "site"
    init_site(folder, now=NOW, domain=DOMAIN)
    config = folder / "listserv.toml"
    config.write_text(config.read_text()
                      .replace('smarthost = ""', f'smarthost = "127.0.0.1:{sink.port}"')
                      .replace('retry_schedule = ["1m", "5m", "15m", "1h", "2h", "4h"]',
                               'retry_schedule = ["1s", "2s"]')
                      .replace("secretariat = []", 'secretariat = ["secretariat@example.org"]'))
    site = Site(folder)
    forums.create(site.db, "peace", title="Peace workshop", path="thematic", now=NOW,
                  facilitators=(FAC, FAC2))
    for address in MEMBERS:
        members.add(site.db, "peace", address, now=NOW, languages=LANGUAGES)
    site.db.conn.close()
    return folder


def set_moderation(folder: Path, **keys) -> None:
    """Change [moderation] keys in the site's listserv.toml."""
    config = folder / "listserv.toml"
    before, header, rest = config.read_text().partition("\n[moderation]\n")
    section, next_header, after = rest.partition("\n[")
    for key, value in keys.items():
        rendered = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
        section, count = re.subn(rf"(?m)^{key} = .*$", f"{key} = {rendered}", section)
        assert count == 1, key
    config.write_text(before + header + section + next_header + after)


def letter(sender: str, to: str, subject: str, body: str, *, extra: str = "",
           message_id: str = "") -> bytes:
    """A plain message as a person's mail program sends it."""
    message_id = message_id or f"{uuid.uuid4().hex}@example.org"
    head = (f"From: {sender}\nTo: {to}\nSubject: {subject}\nMessage-ID: <{message_id}>\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n{extra}")
    return (head + "\n" + body).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def post(sender: str = f"Zoe <{ZOE}>", subject: str = "Water", body: str = "Clean water "
         "for every village.\nSecond line.\n", **kwargs) -> bytes:
    return letter(sender, f"peace@{DOMAIN}", subject, body, **kwargs)


# -- the notice and the reply ------------------------------------------------------------
def reply_address(notice) -> str:
    """The address a reply to a notice goes to (its Reply-To), checked against its text."""
    _, address = email.utils.parseaddr(str(notice["Reply-To"]))
    assert re.fullmatch(r"peace-confirm\+[0-9a-f]{32}@lists\.example\.org", address), address
    assert address in text_of(notice)
    return address


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def quoted(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


LAYOUTS = ("gmail", "outlook", "apple", "thunderbird", "iphone", "android")


def reply_text(layout: str, written: str, notice_text: str, notice_subject: str) -> str:
    """The body a mail client makes when someone writes `written` in reply."""
    who = f"Peace workshop <peace-request@{DOMAIN}>"
    if layout == "gmail":  # on top; the attribution wrapped over two lines
        return (f"{written}\n\nOn Mon, Nov 23, 2026 at 9:00\u202fAM Peace workshop <\n"
                f"peace-request@{DOMAIN}> wrote:\n\n{quoted(notice_text)}\n")
    if layout == "outlook":  # on top; the original unquoted under a header block
        return (f"{written}\n\n________________________________\nFrom: {who}\n"
                f"Sent: Monday, November 23, 2026 9:00 AM\nTo: {FAC}\n"
                f"Subject: {notice_subject}\n\n{notice_text}\n")
    if layout == "apple":  # on top; the attribution quoted too
        return (f"{written}\n\n> On 23 Nov 2026, at 09:00, {who} wrote:\n>\n"
                f"{quoted(notice_text)}\n")
    if layout == "thunderbird":  # its default: the reply below the quote
        return f"On 23/11/2026 09:00, Peace workshop wrote:\n{quoted(notice_text)}\n\n{written}\n"
    if layout == "iphone":
        return (f"{written}\n\nSent from my iPhone\n\n> On 23 Nov 2026, at 09:00, {who} "
                f"wrote:\n>\n{quoted(notice_text)}\n")
    if layout == "android":  # a phone client that copies the original unquoted
        return (f"{written}\n\n\nSent from my Galaxy\n\n\n-------- Original message --------\n"
                f"From: {who}\nDate: 23/11/2026 09:00 (GMT+00:00)\nTo: {FAC}\n"
                f"Subject: {notice_subject}\n\n{notice_text}\n")
    raise AssertionError(layout)


def reply(notice, written: str, *, sender: str = FAC, layout: str = "gmail",
          subject: str | None = None, to: str | None = None, extra: str = "") -> tuple[str, bytes]:
    """(the address, the bytes) of a facilitator's reply to a notice."""
    address = to or reply_address(notice)
    body = reply_text(layout, written, text_of(notice), str(notice["Subject"]))
    raw = letter(sender, address, subject or f"Re: {notice['Subject']}", body,
                 extra=f"In-Reply-To: {notice['Message-ID']}\n{extra}")
    return address, raw


# -- reading the site -----------------------------------------------------------------

def holds_of(folder: Path) -> list[dict]:
    rows = query(folder, "SELECT h.id, h.status, h.reason, h.decision, h.decided_by, "
                         "h.decided_via, h.decision_reason FROM holds h ORDER BY h.id")
    keys = ("id", "status", "reason", "decision", "decided_by", "decided_via",
            "decision_reason")
    return [dict(zip(keys, row)) for row in rows]


def notices_to(sink, address: str, subject_part: str) -> list:
    return [m for m in sink.messages_to(address) if subject_part in str(m["Subject"])]


def wait_notice(sink, address: str = FAC, subject_part: str = "Held for your decision",
                count: int = 1, timeout: float = 20):
    sink.wait_for(lambda s: len(notices_to(s, address, subject_part)) >= count, timeout,
                  f"{count} notice(s) '{subject_part}' to {address}")
    return notices_to(sink, address, subject_part)[count - 1]


# -- the pipeline in-process, at a chosen time --------------------------------------------
class Pipeline:
    """The server's stages run by hand on a Site, with `now` as an argument."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.site = Site(folder)
        self.extensions = wire_extensions()

    def receive(self, raw: bytes, mail_from: str, rcpts: list[str], now: datetime) -> int:
        """Store a message as intake does, then run every stage once at `now`."""
        with self.site.db.atomic():
            row_id = store_incoming(self.site.db, raw, mail_from, rcpts, now)
        self.run(now)
        return row_id

    def run(self, now: datetime) -> None:
        db = self.site.db
        with db.atomic():
            process_received(db, self.site, now, 50, self.extensions)
        with db.atomic():
            moderate(db, self.site, now)
        with db.atomic():
            distribute_pending(db, self.site, now, 50)

    def deliver(self, now: datetime | None = None) -> dict:
        return deliver_pending(self.site, now)
