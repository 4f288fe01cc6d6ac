"""The pipeline after intake: each accepted message, each recipient, once.

`process_received` takes messages in status 'received', reads them (guarded:
a message the `email` package chokes on is held with the reason, never
lost), and for each recipient does what the address asks: a post goes
through the forum's policy (distribute, hold, refuse, ignore), commands go
to `commands.py`, confirmations to `commands.py` (then moderation), bounces
to `bounces.py`, owner and postmaster mail is forwarded. Each message is
handled in one transaction; one that keeps failing is set aside as
'failed' after MAX_ATTEMPTS tries, spaced by `[site] retry_handling`, with
its reason, visible in `listserv status`.
`distribute_pending` turns approved posts into queued deliveries.
Posts to be held leave here in status 'hold'; the moderation stage takes
them from there. What other packages handle (decision tokens, the site's
own addresses such as whatsnew@) comes in as `Extensions`, wired by
`serve.py`, so this module imports none of them. Writes messages, posts
(and through the modules it calls, members and deliveries).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.encoders import encode_base64
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from sqlite_utils.db import NotFoundError

from listserv.delivery.dkim import signature_room
from listserv.delivery.distribution import distribute_post
from listserv.delivery.notify import send_template, send_text
from listserv.delivery.queue import batch_size, queue_message
from listserv.errors import ListservError, MessageError
from listserv.intake.policy import decide_post
from listserv.mail.addresses import classify, normalise
from listserv.mail.headers import clean_header_value, decode_header_text
from listserv.mail.message import Parsed, parse
from listserv.site import forums

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class Extensions:
    """Handlers other packages add to the pipeline.

    `confirm`: tried in turn on a FORUM-confirm+TOKEN message that is not a
    subscription confirmation, `fn(db, site, forum, token, parsed, message_id,
    now) -> bool` (True: the token was theirs). `site`: the site's own
    addresses by local part (e.g. "whatsnew"), `fn(db, site, row, parsed,
    now)` where `parsed` is None for a message that cannot be read. `post`:
    rules applied in turn after the forum's policy to each readable post,
    `fn(db, site, forum, parsed, row, decision, now) -> Decision`.
    `fetch`: what `get REF` and `index` in command mail return,
    `fn(db, site, ref, language) -> (subject, text) | None` (None: nothing
    by that reference); `index` asks it for the ref "index". A site address
    written with a code (`templates+CODE@D`) reaches the same handler, which
    reads the code from the message's recipients.
    """

    confirm: tuple[Callable, ...] = ()
    site: dict[str, Callable] = field(default_factory=dict)
    post: tuple[Callable, ...] = ()
    fetch: Callable | None = None

    @property
    def site_addresses(self) -> frozenset[str]:
        return frozenset(self.site)


NO_EXTENSIONS = Extensions()


def process_received(db, site, now: datetime, limit: int = 20,
                     extensions: Extensions = NO_EXTENSIONS) -> int:
    """Handle up to `limit` received messages that are due, each in its own
    savepoint; one whose handling fails waits before its next try."""
    rows = list(db.query("SELECT id FROM messages WHERE status = 'received' AND retry_at <= ? "
                         "ORDER BY id LIMIT ?", [now.timestamp(), limit]))
    for row in rows:
        try:
            with db.atomic():
                process_message(db, site, row["id"], now, extensions)
        except Exception as error:  # a bug or a message we cannot handle: retry, then set aside
            log.exception("processing message %s failed", row["id"])
            attempts, subject, raw = db.execute(
                "SELECT attempts, subject, raw FROM messages WHERE id = ?",
                [row["id"]]).fetchone()
            attempts += 1
            db.execute("UPDATE messages SET attempts = ?, status = ?, error = ?, retry_at = ?, "
                       "subject = ? WHERE id = ?",
                       [attempts, "failed" if attempts >= MAX_ATTEMPTS else "received",
                        f"{type(error).__name__}: {error}"[:500],
                        _retry_at(site, now, attempts), subject or _subject_of(raw), row["id"]])
    return len(rows)


def _retry_at(site, now: datetime, attempts: int) -> float:
    """When a failed try is tried again: `[site] retry_handling`, doubled each time."""
    return now.timestamp() + site.settings.site.retry_handling_seconds * 2 ** (attempts - 1)


def _subject_of(raw) -> str:
    """The subject of a message whose handling failed (the failed try's own record
    of it was rolled back), read as plainly as possible: never raises."""
    try:
        return decode_header_text(BytesHeaderParser(policy=compat32).parsebytes(
            bytes(raw))["Subject"])[:300]
    except Exception:  # a subject we cannot read: the error says what went wrong
        return ""


def _message_row(db, message_id: int) -> dict:
    """The message's row as a dict. Plain SQL: sqlite-utils' `table.get` and
    `table.update` read the schema on every call (~0.2-0.4 ms each here)."""
    cursor = db.execute("SELECT * FROM messages WHERE id = ?", [message_id])
    found = cursor.fetchone()
    if found is None:
        raise NotFoundError(f"message {message_id}")
    return dict(zip((column[0] for column in cursor.description), found))


def process_message(db, site, message_id: int, now: datetime,
                    extensions: Extensions = NO_EXTENSIONS) -> None:
    row = _message_row(db, message_id)
    settings = site.settings
    domain = settings.domain
    try:
        parsed: Parsed | None = parse(row["raw"], row["mail_from"])
        problem = ""
    except MessageError as error:
        parsed, problem = None, str(error)
    if parsed is not None:
        db.execute("UPDATE messages SET message_id = ?, subject = ?, sender = ?, defects = ? "
                   "WHERE id = ?", [parsed.message_id, parsed.subject[:300],
                                    parsed.sender[1] if parsed.sender else "",
                                    json.dumps(parsed.defects), message_id])
    for rcpt in dict.fromkeys(normalise(r) for r in json.loads(row["rcpt_tos"])):
        recipient = classify(rcpt, domain, extensions.site_addresses)
        if recipient is None:
            log.warning("message %s: recipient %s is not ours; skipped", message_id, rcpt)
            continue
        if recipient.kind == "site" and recipient.slug in extensions.site and parsed is None:
            _pass_unreadable(db, site, row, rcpt, problem, now)  # never dropped unseen
            continue
        if recipient.kind == "site" and recipient.slug in extensions.site:
            extensions.site[recipient.slug](db, site, row, parsed, now)
            continue
        if recipient.kind == "site":
            _forward(db, site, row, settings.site.secretariat, f"site:{recipient.slug}", now,
                     parsed)
            continue
        if recipient.kind == "bounces":
            from listserv.delivery.bounces import handle_bounce_message
            handle_bounce_message(db, site, row["raw"], recipient.detail, now,
                                  slug=None if recipient.slug == "listserv" else recipient.slug)
            continue
        forum = forums.find(db, recipient.slug)
        if forum is None:
            log.warning("message %s: forum %s no longer exists", message_id, recipient.slug)
            continue
        if recipient.kind == "post":
            handle_post(db, site, forum, row, parsed, problem, now, extensions)
        elif parsed is None or not parsed.answerable:
            log.info("message %s to %s: automatic, bulk, unreadable or unsigned mail is "
                     "not answered (%s)", message_id, rcpt,
                     problem or (parsed.auto or parsed.bulk or "bounce or no clear From"))
        elif recipient.kind == "owner":
            _forward(db, site, row, forum["facilitators"] or settings.site.secretariat,
                     f"owner:{forum['slug']}", now, parsed)
        else:
            _handle_command_mail(db, site, forum, recipient, parsed, message_id, now,
                                 extensions, mail_from=row["mail_from"])
    db.execute("UPDATE messages SET status = 'done', error = ? WHERE id = ?",
               [problem, message_id])


def _handle_command_mail(db, site, forum, recipient, parsed, message_id, now,
                         extensions: Extensions, mail_from: str = "") -> None:
    from listserv.intake import commands, leaving
    if recipient.kind == "confirm":
        from listserv.delivery.bounce_actions import handle_reenable
        from listserv.intake.leaving import handle_rejoin
        for handler in (commands.handle_confirm, handle_reenable, handle_rejoin,
                        *extensions.confirm):
            if handler(db, site, forum, recipient.detail, parsed, message_id, now):
                return
        _reply_invalid_token(db, site, forum, parsed, message_id, now)
    elif recipient.kind == "leave" and recipient.detail:
        envelope = normalise(mail_from or "")
        try:  # the per-member address from List-Unsubscribe: leave at once
            try:
                leaving.leave_by_mail(db, site, forum, recipient.detail,
                                            parsed.sender[1], now)
            except ListservError:  # RCPT took it for the envelope sender (`tokened`)
                if not envelope or envelope == parsed.sender[1]:
                    raise
                leaving.leave_by_mail(db, site, forum, recipient.detail, envelope, now)
        except ListservError as error:
            log.info("message %s: one-click leave refused: %s", message_id, error)
            _reply_invalid_token(db, site, forum, parsed, message_id, now, str(error))
    else:
        commands.handle_request(db, site, forum, recipient.kind, parsed, message_id, now,
                                fetch=extensions.fetch)


def _reply_invalid_token(db, site, forum, parsed, message_id, now,
                        reason: str = "this confirmation code is not known here") -> None:
    if parsed.sender is None:
        return
    send_template(db, site, "token-invalid.txt", to=parsed.sender[1],
                  language=forum["language"], ref=f"reply:{message_id}", now=now, forum=forum,
                  in_reply_to=parsed.message_id, reason=reason)


def handle_post(db, site, forum: dict, row: dict, parsed: Parsed | None, problem: str,
                now: datetime, extensions: Extensions = NO_EXTENSIONS) -> None:
    """Record the post once per forum and carry out the forum's policy."""
    domain = site.settings.domain
    header_id = (parsed.message_id if parsed else "") or f"listserv-{row['id']}@{domain}"
    sender = parsed.sender[1] if parsed and parsed.sender else normalise(row["mail_from"])
    subject = parsed.subject if parsed else ""
    known = db.execute("SELECT id, status FROM posts WHERE forum_id = ? AND header_id = ?",
                       [forum["id"], header_id]).fetchone()
    if known:
        log.info("message %s is a duplicate of post %s on %s (Message-ID %s); not "
                 "distributed again", row["id"], known[0], forum["slug"], header_id)
        return
    post_id = db.execute(
        "INSERT INTO posts (message_id, forum_id, header_id, sender, subject, status, "
        "created_at) VALUES (?, ?, ?, ?, ?, 'new', ?)",
        [row["id"], forum["id"], header_id, sender, clean_header_value(subject, 300),
         now.isoformat()]).lastrowid
    if parsed is None:
        mark_for_hold(db, post_id, f"unreadable message: {problem}")
        return
    decision = decide_post(db, forum, parsed, domain)
    for rule in extensions.post:
        decision = rule(db, site, forum, parsed, row, decision, now)
    if decision.action == "distribute":
        db.execute("UPDATE posts SET status = 'approved' WHERE id = ?", [post_id])
    elif decision.action == "hold":
        mark_for_hold(db, post_id, decision.reason)
    elif decision.action == "refuse":
        db.execute("UPDATE posts SET status = 'refused', reason = ? WHERE id = ?",
                   [decision.reason, post_id])
        if parsed.answerable:  # never to list traffic, bulk or automatic mail
            send_template(db, site, "post-refused.txt", to=sender, language=forum["language"],
                          ref=f"refused:{post_id}", now=now, forum=forum,
                          in_reply_to=parsed.message_id,
                          subject=clean_header_value(subject, 200), reason=decision.reason)
        log.info("refused post %s on %s: %s", post_id, forum["slug"], decision.reason)
    else:
        db.execute("UPDATE posts SET status = 'ignored', reason = ? WHERE id = ?",
                   [decision.reason, post_id])
        log.info("ignored message %s on %s: %s", row["id"], forum["slug"], decision.reason)


def mark_for_hold(db, post_id: int, reason: str) -> None:
    """Hand a post to moderation: status 'hold' with the reason; the
    moderation stage makes the hold and tells the facilitators."""
    db.execute("UPDATE posts SET status = 'hold', reason = ? WHERE id = ?",
               [reason[:500], post_id])


def _forward(db, site, row: dict, to: list[str] | tuple[str, ...], ref: str, now: datetime,
             parsed: Parsed | None) -> None:
    """Pass a message on unchanged to people (facilitators, secretariat)."""
    if parsed is not None and parsed.bounce:
        log.info("message %s: a bounce to %s is recorded, not forwarded", row["id"], ref)
        return
    if not to:
        log.warning("message %s for %s kept: nobody to forward it to (set [site] "
                    "secretariat)", row["id"], ref)
        return
    sender = f"listserv-bounces@{site.settings.domain}"
    queue_message(db, f"{ref}:{row['id']}", row["raw"], list(to), sender, now)


def _pass_unreadable(db, site, row: dict, rcpt: str, problem: str, now: datetime) -> None:
    """A message to one of the site's own addresses that cannot be read safely
    goes to the secretariat with the reason, the original attached untouched."""
    settings = site.settings
    if not settings.site.secretariat:
        log.warning("message %s to %s cannot be read (%s) and is kept: nobody to tell "
                    "(set [site] secretariat)", row["id"], rcpt, problem)
        return
    log.info("message %s to %s cannot be read (%s); passed to the secretariat",
             row["id"], rcpt, problem)
    original = Message()
    original.set_payload(bytes(row["raw"]))
    original["Content-Type"] = "application/octet-stream"
    original["Content-Disposition"] = f'attachment; filename="message-{row["id"]}.eml"'
    encode_base64(original)
    text = (f"A message to {rcpt} could not be read safely, so it was not handled:\n\n"
            f"  {problem}\n\nEnvelope sender: {row['mail_from'] or '(none)'}\n"
            f"Received: {row['received_at']}\nStored as message {row['id']}.\n\n"
            f"The original is attached as it arrived. If it is genuine, ask the sender "
            f"to send it again from an ordinary mail program.\n")
    for address in settings.site.secretariat:
        send_text(db, site, to=address, subject=f"Unreadable message to {rcpt}", text=text,
                  ref=f"unreadable:{row['id']}:{rcpt}", now=now, attachments=[original])


def distribute_pending(db, site, now: datetime, limit: int = 5) -> int:
    """Queue the copies of up to `limit` approved posts; returns how many were taken.
    A post that cannot be rendered is held (or, if a facilitator already approved
    it, set aside as failed)."""
    settings = site.settings
    rows = list(db.query("SELECT * FROM posts WHERE status = 'approved' AND retry_at <= ? "
                         "ORDER BY id LIMIT ?", [now.timestamp(), limit]))
    for post in rows:
        forum = forums.find(db, db.execute("SELECT slug FROM forums WHERE id = ?",
                                           [post["forum_id"]]).fetchone()[0])
        raw = db.execute("SELECT raw FROM messages WHERE id = ?",
                         [post["message_id"]]).fetchone()[0]
        try:
            with db.atomic():
                distribute_post(db, post, forum, raw, domain=settings.domain,
                                budget=settings.delivery.lowband_budget,
                                personal=bool(settings.web.url), now=now,
                                batch=batch_size(site), web_url=settings.web.url,
                                mitigation=dmarc_action(site, forum, raw),
                                signature_room=signature_room(settings))
        except MessageError as error:
            _set_aside_unrenderable(db, post, error, now)
        except Exception as error:  # not foreseen: retry a few times, then set aside
            log.exception("distributing post %s failed", post["id"])
            attempts = post["attempts"] + 1
            db.execute("UPDATE posts SET attempts = ?, status = ?, reason = ?, retry_at = ? "
                       "WHERE id = ?",
                       [attempts, "failed" if attempts >= MAX_ATTEMPTS else "approved",
                        f"{type(error).__name__}: {error}"[:500],
                        _retry_at(site, now, attempts), post["id"]])
    return len(rows)


def pending_authors(db, limit: int = 5) -> list[str]:
    """The domains of the authors of the next posts `distribute_pending` takes."""
    return [row[0].rpartition("@")[2] for row in db.execute(
        "SELECT sender FROM posts WHERE status = 'approved' ORDER BY id LIMIT ?", [limit])]


def dmarc_action(site, forum: dict, raw: bytes) -> str:
    """The forum's DMARC mitigation for this post (dmarc.py); an unreadable
    From is the renderer's problem, not this one's."""
    from listserv.delivery import dmarc
    try:
        message = BytesHeaderParser(policy=compat32).parsebytes(raw)
        return dmarc.action(site.dmarc, forum.get("dmarc", "auto"), message)
    except Exception as error:  # never hold a post up for this
        log.warning("DMARC mitigation of a post on %s: %s: %s; munging", forum["slug"],
                    type(error).__name__, error)
        return "munge"


def _set_aside_unrenderable(db, post: dict, error: MessageError, now: datetime) -> None:
    """Hold a post we cannot render; if a facilitator approved it already, fail it."""
    held_before = db.execute("SELECT 1 FROM holds WHERE post_id = ?", [post["id"]]).fetchone()
    if held_before:
        db.execute("UPDATE posts SET status = 'failed', reason = ? WHERE id = ?",
                   [str(error), post["id"]])
        log.error("approved post %s cannot be distributed: %s", post["id"], error)
    else:
        mark_for_hold(db, post["id"], str(error))
