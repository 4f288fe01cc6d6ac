"""The bulletin's readers, and its copies: who gets What's New, and how.

The audience is every member of any forum (in the language and profile of
their first membership that is not `nomail`) unless they opted out, plus
the bulletin's direct readers. `bulletin_readers` holds both kinds of
choice: 'subscribed' (a direct reader, or a member's own language/profile
for the bulletin) and 'optout'. Readers manage it by email at
whatsnew-request@D (`subscribe [lowband] [lang=xx]`, `unsubscribe`,
`help`, `get REF`, `index`), whatsnew-join@D and whatsnew-leave@D; both
changes go through a confirmation round trip to whatsnew-confirm+CODE@D,
so a forged From changes nothing. `send_issue` stores one copy per
language and profile (multipart/alternative for `email`, plain-text parts
under the byte budget for `lowband`) and queues them with one statement
each, all under the issue's ref: nobody gets two copies.
Writes `bulletin_readers`, `tokens` and the outbound queue.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import format_datetime, formataddr

from digests import publications
from digests.mailing import (
    bulk_message,
    lowband_pieces,
    narrow,
    render_for,
    send,
    site_address,
)
from digests.slots import iso
from listserv.archive.retrieval import document
from listserv.delivery.distribution import list_headers
from listserv.delivery.queue import batch_size, enqueue_select, queue_message, store_body
from listserv.errors import TokenError
from listserv.intake.commands import Command, parse_commands, subscribe_options
from listserv.mail.addresses import domain_of, normalise
from listserv.mail.replies import body_of
from listserv.mail.tokens import issue_token, peek_token, use_token

log = logging.getLogger(__name__)

SUBSCRIBE, UNSUBSCRIBE = "bulletin-subscribe", "bulletin-unsubscribe"
AUDIENCE = "temp.bulletin_audience"
MAX_COMMANDS = 10


def pseudo_forum(site, title: str = "What's New") -> dict:
    """The bulletin seen as an announce-only forum, for list headers."""
    return {"slug": site.settings.whatsnew.address, "title": title, "policy": "announce",
            "archive_url": "", "id": None}


def _fill_audience(db, site) -> None:
    settings = site.settings
    db.execute(f"DROP TABLE IF EXISTS {AUDIENCE}")
    db.execute(f"CREATE TABLE {AUDIENCE} (address TEXT PRIMARY KEY, domain TEXT, "
               f"language TEXT, profile TEXT)")
    db.execute(f"INSERT OR IGNORE INTO {AUDIENCE} SELECT address, domain, language, profile "
               f"FROM bulletin_readers WHERE status = 'subscribed'")
    db.execute(f"INSERT OR IGNORE INTO {AUDIENCE} SELECT address, domain, language, profile "
               f"FROM (SELECT address, domain, language, profile, min(id) FROM members "
               f"WHERE mode != 'nomail' AND delivery = 'enabled' GROUP BY address) AS m "
               f"WHERE NOT EXISTS "
               f"(SELECT 1 FROM bulletin_readers b WHERE b.address = m.address)")
    db.execute(f"UPDATE {AUDIENCE} SET language = ? WHERE language NOT IN "
               f"(SELECT value FROM json_each(?))",
               [settings.site.default_language, json.dumps(settings.site.languages)])


def audience_size(db, site) -> int:
    with db.atomic():
        _fill_audience(db, site)
        count = db.execute(f"SELECT count(*) FROM {AUDIENCE}").fetchone()[0]
        db.execute(f"DROP TABLE {AUDIENCE}")
    return count


def send_issue(db, site, payload: dict, now: datetime,
               render: Callable[[object, dict, str], tuple[str, str, str]],
               rendered: dict[str, tuple[str, str, str]] | None = None) -> int:
    """Store the issue's copies and queue one to each reader; returns rows queued.
    `render(site, payload, language)` gives a language's (subject, text, html)
    (What's New passes its own, so this module never imports it back);
    `rendered` holds renderings already made, by language."""
    settings = site.settings
    domain, key = settings.domain, payload["key"]
    envelope = f"listserv-bounces@{domain}"
    _fill_audience(db, site)
    queued = 0
    variants = db.execute(f"SELECT DISTINCT language, profile FROM {AUDIENCE} "
                          f"ORDER BY language, profile").fetchall()
    rendered = dict(rendered or {})
    for language, profile in variants:
        if language not in rendered:
            rendered[language] = render(site, payload, language)
        subject, text, html = rendered[language]
        title = payload["headings"].get(language, {}).get("title", "What's New")
        forum = pseudo_forum(site, title)
        message_id = f"whatsnew.{payload['number']}.{language}.{profile}@{domain}"
        select = (f"SELECT address, domain FROM {AUDIENCE} WHERE language = ? "
                  f"AND profile = ?")
        copies = _copies(site, forum, subject, text, html if profile == "email" else None,
                         message_id, now, lowband=profile == "lowband")
        for part, raw in enumerate(copies, 1):
            ref = publications.delivery_ref(key, part)
            body_id = store_body(db, ref, raw, now)
            queued += enqueue_select(db, ref, body_id, envelope, now, select,
                                     [language, profile], batch=batch_size(site))
    db.execute(f"DROP TABLE {AUDIENCE}")
    return queued


def _copies(site, forum: dict, subject: str, text: str, html: str | None, message_id: str,
            now: datetime, lowband: bool) -> list[bytes]:
    """The copy for `email` readers, or the parts for `lowband` ones (plain text
    under the byte budget, numbered, as lowband forum copies are)."""
    settings = site.settings
    domain = settings.domain
    listed = [(k, v) for k, v in list_headers(forum, domain, personal=False)
              if k != "List-Unsubscribe"]
    common = [("From", formataddr((settings.site.name, site_address(site, "whatsnew")))),
              ("To", site_address(site, "whatsnew")), ("Date", format_datetime(now)),
              *listed, ("List-Unsubscribe", f"<mailto:{site_address(site, 'whatsnew-leave')}>"),
              ("Auto-Submitted", "auto-generated")]
    if not lowband:
        return [bulk_message([*common, ("Subject", subject),
                              ("Message-ID", f"<{message_id}>")], text, html)]
    longest = [*common, ("Subject", f"{subject} (99/99)"),
               ("Message-ID", f"<lowband99.{message_id}>"),
               ("In-Reply-To", f"<lowband1.{message_id}>")]
    pieces = lowband_pieces(site, narrow(text), longest)
    total = len(pieces)
    return [bulk_message([*common, ("Subject", subject if total == 1 else
                                    f"{subject} ({number}/{total})"),
                          ("Message-ID", f"<lowband{number}.{message_id}>"),
                          *([("In-Reply-To", f"<lowband1.{message_id}>")] if number > 1 else [])],
                         piece if total == 1 else f"[{number}/{total}]\n\n{piece}")
            for number, piece in enumerate(pieces, 1)]


# -- readers' commands: whatsnew-request, -join, -leave, -confirm+CODE, -owner ------------

def reader_language(db, site, address: str, hints: list[str] = ()) -> str:
    languages = site.settings.site.languages
    row = db.execute("SELECT language FROM bulletin_readers WHERE address = ? UNION ALL "
                     "SELECT language FROM members WHERE address = ? LIMIT 1",
                     [address, address]).fetchone()
    for candidate in ([row[0]] if row else []) + list(hints):
        if candidate in languages:
            return candidate
    return site.settings.site.default_language


def _sender(site, row, parsed, what: str) -> tuple[str, str] | None:
    if parsed is None or not parsed.answerable:
        log.info("message %s to %s: unreadable or automatic mail; not answered", row["id"],
                 what)
        return None
    if parsed.sender[1].endswith("@" + site.settings.domain):
        return None
    return parsed.sender


def handle_request(db, site, row, parsed, now: datetime, kind: str = "request",
                   fetch: Callable | None = None) -> None:
    """Commands to whatsnew-request@D (kind "request"), -join@ and -leave@.
    `fetch(db, site, ref, language)` answers `get` and `index` (digests.fetch,
    passed in by wiring.py so that this module never imports What's New)."""
    sender = _sender(site, row, parsed, f"whatsnew-{kind}")
    if sender is None:
        return
    address = sender[1]
    commands, unknown = parse_commands(parsed.subject, body_of(parsed.message))
    if kind == "join":
        commands = [c for c in commands if c.name == "subscribe"][:1] or \
            [Command("subscribe", [], "subscribe")]
        unknown = []
    elif kind == "leave":
        commands, unknown = [Command("unsubscribe", [], "unsubscribe")], []
    language = reader_language(db, site, address, [c.language for c in commands if c.language])
    reply = _Reply(db, site, address, row["id"], parsed.message_id, language, now, fetch)
    if not [c for c in commands if c.name != "help"]:
        reply.mail("whatsnew-help.txt", ":help")
        return
    results = [reply.run(command) for command in commands[:MAX_COMMANDS]]
    if all(r["code"] == "confirm-sent" for r in results):
        return  # the confirmation request is the answer
    reply.mail("whatsnew-results.txt", "", results=results, unknown=unknown[:3])
    if any(c.name == "help" for c in commands):
        reply.mail("whatsnew-help.txt", ":help")


class _Reply:
    """One command mail to the bulletin being answered."""

    def __init__(self, db, site, address, row_id, in_reply_to, language, now, fetch=None):
        self.db, self.site, self.address, self.row_id = db, site, address, row_id
        self.in_reply_to, self.language, self.now = in_reply_to, language, now
        self.fetch = fetch

    def mail(self, name: str, suffix: str, reply_to: str = "", **context) -> None:
        subject, text = render_for(self.site, name, self.language, address=self.address,
                                   languages=list(self.site.settings.site.languages),
                                   **context)
        send(self.db, self.site, to=self.address, subject=subject, text=text, now=self.now,
             ref=f"reply:{self.row_id}{suffix}", sender=site_address(self.site,
                                                                     "whatsnew-request"),
             reply_to=reply_to, in_reply_to=self.in_reply_to)

    def search(self, command: Command) -> dict:
        """`search WORDS`: the public archives and the initiatives (listserv/archive/)."""
        from listserv.archive.retrieval import (
            SearchError,
            clip,
            is_lowband,
            search_document,
            send_document,
        )
        words = clip(" ".join(command.args))
        try:
            found = search_document(self.db, self.site, None, words, self.address,
                                    self.language)
        except SearchError:
            return {"line": command.line, "code": "search-usage", "value": ""}
        value = " ".join(words.split())[:60]
        if found is None:
            return {"line": command.line, "code": "search-none", "value": value}
        send_document(self.db, self.site, to=self.address, found=found, now=self.now,
                      ref=f"reply:{self.row_id}:search:{zlib.crc32(words.encode()):08x}",
                      forum=None, in_reply_to=self.in_reply_to,
                      lowband=is_lowband(self.db, self.address),
                      budget=self.site.settings.delivery.lowband_budget,
                      sender=site_address(self.site, "whatsnew-request"))
        return {"line": command.line, "code": "search-sent", "value": value}

    def run(self, command: Command) -> dict:
        line = command.line
        if command.name in ("subscribe", "unsubscribe"):
            return self.ask(command)
        if command.name == "search":
            return self.search(command)
        if command.name in ("get", "index"):
            ref = "index" if command.name == "index" else \
                (command.args[0].strip(".,;:()<>\"'")[:40] if command.args else "")
            found = self.fetch(self.db, self.site, ref, self.language) \
                if ref and self.fetch else None
            if found is None and command.name == "get" and ref:  # a forum's post or thread
                found = document(self.db, self.site, None, ref, self.address, self.language)
            if found is None:
                return {"line": line, "code": "get-none" if ref else "get-usage", "value": ref}
            subject, text = found
            send(self.db, self.site, to=self.address, subject=subject, text=text, now=self.now,
                 ref=f"reply:{self.row_id}:get:{ref.lower()}", in_reply_to=self.in_reply_to,
                 sender=site_address(self.site, "whatsnew-request"))
            return {"line": line, "code": f"{command.name}-sent", "value": ref}
        if command.name == "help":
            return {"line": line, "code": "help-sent", "value": ""}
        return {"line": line, "code": "not-here", "value": command.name}

    def ask(self, command: Command) -> dict:
        """A confirmation request for joining or leaving the bulletin."""
        settings = self.site.settings
        options, problem, _ = subscribe_options(command.args, settings.site.languages)
        if problem:
            return {"line": command.line, "code": "bad-value", "value": problem.split(":")[-1]}
        purpose = SUBSCRIBE if command.name == "subscribe" else UNSUBSCRIBE
        waiting = self.db.execute(
            "SELECT count(*) FROM tokens WHERE purpose = ? AND address = ? AND used_at IS NULL "
            "AND expires_at >= ?", [purpose, self.address, iso(self.now)]).fetchone()[0]
        if waiting >= 3:
            return {"line": command.line, "code": "throttled", "value": ""}
        if "language" in options:
            self.language = options["language"]
        data = {"language": self.language, "profile": options.get("profile", "email")}
        lifetime = settings.moderation.confirm_seconds
        token = issue_token(self.db, purpose, forum_id=None, address=self.address, data=data,
                            now=self.now, lifetime_seconds=lifetime)
        confirm = site_address(self.site, "whatsnew-confirm").replace("@", f"+{token}@")
        self.mail("whatsnew-confirm.txt", f":{purpose}", reply_to=confirm,
                  action=command.name, confirm_address=confirm, profile=data["profile"],
                  expires=(self.now + timedelta(seconds=lifetime)).strftime("%Y-%m-%d %H:%M"))
        return {"line": command.line, "code": "confirm-sent", "value": ""}


def code_in(row: dict, base: str) -> str:
    """The code of `base+CODE@domain` among a message's recipients, or ''."""
    prefix = base.split("@")[0] + "+"
    for rcpt in json.loads(row["rcpt_tos"]):
        local = normalise(rcpt).rpartition("@")[0]
        if local.startswith(prefix):
            return local[len(prefix):]
    return ""


def handle_confirm(db, site, row, parsed, now: datetime) -> None:
    """A reply to whatsnew-confirm+CODE@D: carry out the join or the leave once."""
    sender = _sender(site, row, parsed, "whatsnew-confirm")
    if sender is None:
        return
    address, token = sender[1], code_in(row, site_address(site, "whatsnew-confirm"))
    reply = _Reply(db, site, address, row["id"], parsed.message_id,
                   reader_language(db, site, address), now)
    found = None
    for purpose in (SUBSCRIBE, UNSUBSCRIBE):
        try:
            found = peek_token(db, token, purpose)
            break
        except TokenError:
            continue
    code = "token-unknown"
    if found is not None:
        if found["address"] != address:
            code = "token-address"
        else:
            try:
                use_token(db, token, found["purpose"], now)
            except TokenError as error:
                code = "token-used" if "already" in str(error) else "token-expired"
            else:
                data = found["data"]
                status = "subscribed" if found["purpose"] == SUBSCRIBE else "optout"
                db.execute("INSERT OR REPLACE INTO bulletin_readers (address, domain, status, "
                           "language, profile, at) VALUES (?, ?, ?, ?, ?, ?)",
                           [address, domain_of(address), status, data["language"],
                            data["profile"], iso(now)])
                reply.language = data["language"]
                code = status
                log.info("%s %s the bulletin", address,
                         "joined" if status == "subscribed" else "left")
    reply.mail("whatsnew-results.txt", "", results=[{"line": "confirm", "code": code,
                                                      "value": ""}], unknown=[])


def handle_owner(db, site, row, parsed, now: datetime) -> None:
    """Mail to whatsnew-owner@D reaches the secretariat unchanged."""
    secretariat = list(site.settings.site.secretariat)
    if not secretariat or (parsed is not None and parsed.bounce):
        return
    queue_message(db, f"site:whatsnew-owner:{row['id']}", row["raw"], secretariat,
                  f"listserv-bounces@{site.settings.domain}", now)


def readers(db) -> list[dict]:
    return list(db.query("SELECT * FROM bulletin_readers ORDER BY address"))
