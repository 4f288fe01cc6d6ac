"""Forum digests: a forum's posts gathered for its `digest` members.

A forum with a daily or weekly digest owes one at each slot of its
schedule (`[digest] time` and `weekday`, in the site's time zone) for the
posts distributed up to that slot, and one earlier as soon as
`[digest] max_posts` posts or `max_bytes` bytes wait. Each distributed post
goes into exactly one digest: its `digest_posts` row (keyed by the post)
is written in the transaction that stores the digest and queues its
copies. `email` members get a MIME digest (multipart/mixed: the table of
contents, then a multipart/digest of message/rfc822 posts, HTML sanitised
as in distribution); `lowband` members get RFC 1153 plain text split into
parts under their byte budget. Headings come from `digest-issue.txt` in the
member's language; posts are as they were written. Volume N is the Nth
year of the forum; issue numbers run on. Writes `publications`,
`digest_posts` and the outbound queue; reads posts and messages.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import secrets
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from digests import publications
from digests.mailing import bulk_message, lowband_pieces, narrow, render_for
from digests.slots import digest_schedule, iso, last_slot
from listserv.delivery.distribution import list_headers, prefixed_subject, render_post
from listserv.delivery.notify import forum_addresses
from listserv.delivery.queue import batch_size, enqueue_select, store_body
from listserv.errors import ListservError, MessageError
from listserv.mail.compose import compose, to_bytes
from listserv.mail.headers import decode_header_text
from listserv.mail.text import text_body
from listserv.site import forums

log = logging.getLogger(__name__)

KIND = "digest"
PERIODS = {"daily": timedelta(days=1), "weekly": timedelta(days=7)}
KEPT_HEADERS = frozenset({"date", "from", "to", "cc", "subject", "message-id", "in-reply-to",
                          "references", "mime-version", "content-type",
                          "content-transfer-encoding", "content-disposition"})
_FIELD = re.compile(rb"^([!-9;-~]+):")


def key_of(slug: str, number: int) -> str:
    return f"digest:{slug}:{number}"


def _floor(db, forum: dict, end: str) -> str:
    """Posts distributed before this are older than the forum's digests."""
    first = db.execute("SELECT min(period_start) FROM publications WHERE kind = ? AND "
                       "forum_id = ?", [KIND, forum["id"]]).fetchone()[0]
    if first:
        return first
    period = PERIODS.get(forum["digest"], PERIODS["weekly"])
    return iso(datetime.fromisoformat(end) - period)


def pending(db, forum: dict, until: str, floor: str | None = None,
            with_raw: bool = True) -> list[dict]:
    """Distributed posts of the forum in no digest yet, distributed by `until`."""
    floor = floor or _floor(db, forum, until)
    raw = ", m.raw" if with_raw else ""
    return list(db.query(
        f"SELECT p.id, p.subject, p.sender, p.header_id, p.distributed_at, m.size{raw} "
        f"FROM posts p JOIN messages m ON m.id = p.message_id "
        f"LEFT JOIN digest_posts d ON d.post_id = p.id WHERE p.forum_id = ? "
        f"AND p.status = 'distributed' AND d.post_id IS NULL AND p.distributed_at > ? "
        f"AND p.distributed_at <= ? ORDER BY p.id", [forum["id"], floor, until]))


def due(db, site, forum: dict, now: datetime) -> str | None:
    """The end of the period the forum owes a digest for at `now`, or None."""
    settings = site.settings
    cron = digest_schedule(settings, forum["digest"])
    if cron is None:
        return None
    slot = last_slot(cron, settings.site.timezone, now)
    last = publications.latest(db, KIND, forum["id"])
    if slot is not None and (last is None or (last["period_end"] or "") < iso(slot)):
        if pending(db, forum, iso(slot), with_raw=False):
            return iso(slot)
    waiting = pending(db, forum, iso(now), with_raw=False)
    size = sum(row["size"] for row in waiting)
    if len(waiting) >= settings.digest.max_posts or size >= settings.digest.max_bytes:
        return iso(now)
    return None


def publish_due(db, site, now: datetime) -> list[str]:
    published = []
    for (slug,) in db.execute("SELECT slug FROM forums WHERE digest != 'never' ORDER BY slug"):
        forum = forums.get(db, slug)
        end = due(db, site, forum, now)
        if end is not None:
            published.append(publish(db, site, forum, end, now))
    return published


def send_now(db, site, slug: str | None, now: datetime) -> list[str]:
    """`listserv digest send [SLUG]`: a digest now of every post waiting for one."""
    chosen = [forums.get(db, slug)] if slug else [
        forums.get(db, s) for (s,) in db.execute("SELECT slug FROM forums ORDER BY slug")]
    keys = []
    for forum in chosen:
        if pending(db, forum, iso(now), with_raw=False):
            keys.append(publish(db, site, forum, iso(now), now))
    if slug and not keys:
        raise ListservError(f"no post of '{slug}' is waiting for a digest")
    return keys


def publish(db, site, forum: dict, end: str, now: datetime) -> str:
    """Store the forum's next digest of the posts up to `end` and queue its copies."""
    settings = site.settings
    posts = [_read(row) for row in pending(db, forum, end)]
    number = publications.next_number(db, KIND, forum["id"])
    last = publications.latest(db, KIND, forum["id"])
    start = last["period_end"] if last else _floor(db, forum, end)
    digest = {"number": number, "key": key_of(forum["slug"], number),
              "volume": _volume(forum, end), "date": end[:10], "count": len(posts)}
    languages = settings.site.languages
    subject, text = render_rfc1153(site, forum, digest, posts, forum["language"])
    payload = {"key": digest["key"], "kind": KIND, "number": number, "volume": digest["volume"],
               "title": subject, "language": forum["language"], "forum": forum["slug"],
               "period": {"start": start, "end": end}, "html": "", "text": text,
               "sections": [{"heading": forum["title"], "subheading": "", "path": forum["path"],
                             "items": [{"ref": f"POST-{p['id']}", "title": p["subject"],
                                        "text": p["text"], "author": p["author"],
                                        "language": p["language"] or forum["language"],
                                        "date": p["date"]}
                                       for p in posts]}]}
    publications.store_publication(
        db, key=digest["key"], kind=KIND, forum_id=forum["id"], volume=digest["volume"],
        number=number, title=subject, language=forum["language"], payload=payload, now=now,
        period_start=start, period_end=end)
    db.conn.executemany("INSERT INTO digest_posts (post_id, forum_id, publication) "
                        "VALUES (?, ?, ?)", [(p["id"], forum["id"], digest["key"])
                                             for p in posts])
    queued = 0
    sender = forum_addresses(forum["slug"], settings.domain)["bounces"]
    lang_of = "CASE WHEN language IN (SELECT value FROM json_each(?)) THEN language ELSE ? END"
    select = (f"SELECT address, domain FROM members WHERE forum_id = ? AND mode = 'digest' "
              f"AND delivery = 'enabled' AND profile = ? AND {lang_of} = ?")
    variants = db.execute(f"SELECT DISTINCT {lang_of}, profile FROM members WHERE "
                          f"forum_id = ? AND mode = 'digest'",
                          [json.dumps(languages), settings.site.default_language,
                           forum["id"]]).fetchall()
    parts: list[bytes] = []  # each post as a message/rfc822 part: the same in every language
    for language, profile in variants:
        if profile == "lowband":
            copies = lowband_copies(site, forum, digest, posts, language)
        else:
            parts = parts or [_as_part(post, forum, settings.domain) for post in posts]
            copies = [mime_digest(site, forum, digest, posts, language, parts)]
        for part, raw in enumerate(copies, 1):
            ref = publications.delivery_ref(digest["key"], part)
            personal = profile == "email" and bool(settings.web.url)
            body_id = store_body(db, ref, raw, now, forum["id"], personal)
            queued += enqueue_select(db, ref, body_id, sender, now, select,
                                     [forum["id"], profile, json.dumps(languages),
                                      settings.site.default_language, language],
                                     batch=1 if personal else batch_size(site))
    publications.mark_sending(db, digest["key"])
    log.info("digest %s published: %d posts, %d copies queued", digest["key"], len(posts),
             queued)
    return digest["key"]


def _volume(forum: dict, end: str) -> int:
    created = datetime.fromisoformat(forum["created_at"])
    return max(1, (datetime.fromisoformat(end) - created).days // 365 + 1)


def _read(row: dict) -> dict:
    """A post as the digest shows it: author, date, subject, plain text, raw bytes."""
    raw = row["raw"]
    try:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        author = decode_header_text(message.get("From", "")) or row["sender"]
        date = decode_header_text(message.get("Date", "")) or row["distributed_at"]
        text = text_body(message, limit=50_000)
        # the language the post declares (a relay declares its readers' replies)
        language = str(message.get("Content-Language", "")).split(",")[0].strip().lower()
        language = language if re.fullmatch(r"[a-z]{2,3}", language) else ""
    except Exception:  # the post went out, so this is very unlikely; show what we know
        author, date, text, language = row["sender"], row["distributed_at"], "", ""
    return {"id": row["id"], "subject": row["subject"] or "(no subject)", "author": author,
            "date": date, "text": text.replace("\r\n", "\n").strip(), "raw": raw,
            "header_id": row["header_id"], "language": language}


def _toc(site, forum: dict, digest: dict, posts: list[dict], language: str,
         plain: bool) -> tuple[str, str]:
    listing = [{"number": n, "subject": p["subject"], "author": p["author"], "date": p["date"]}
               for n, p in enumerate(posts, 1)]
    return render_for(site, "digest-issue.txt", language, forum=_forum_context(forum),
                      addresses=forum_addresses(forum["slug"], site.settings.domain),
                      digest=digest, posts=listing, plain=plain)


def _forum_context(forum: dict) -> dict:
    return {key: forum[key] for key in ("slug", "title", "path", "language", "policy",
                                        "description")}


def render_rfc1153(site, forum: dict, digest: dict, posts: list[dict],
                   language: str) -> tuple[str, str]:
    """(subject, text) of the RFC 1153 digest: preamble and table of contents,
    each post with Date, From and Subject, and the trailer."""
    subject, preamble = _toc(site, forum, digest, posts, language, plain=True)
    chunks = [preamble.rstrip("\n"), "", "-" * 70, ""]
    for post in posts:
        chunks += [f"Date: {post['date']}", f"From: {post['author']}",
                   f"Subject: {post['subject']}", "", post["text"], "", "-" * 30, ""]
    end = f"End of {forum['title']} Digest, Vol {digest['volume']}, Issue {digest['number']}"
    chunks += [end, "*" * len(end)]
    return subject, "\n".join(chunks) + "\n"


def lowband_copies(site, forum: dict, digest: dict, posts: list[dict],
                   language: str) -> list[bytes]:
    """The RFC 1153 digest at most 72 wide, in numbered parts under the byte budget."""
    settings = site.settings
    domain = settings.domain
    subject, text = render_rfc1153(site, forum, digest, posts, language)
    subject = prefixed_subject(subject, forum["slug"])
    addresses = forum_addresses(forum["slug"], domain)
    message_id = f"{digest['key'].replace(':', '.')}.{language}@{domain}"
    common = [("From", addresses["request"]), ("To", addresses["post"]),
              ("Date", format_datetime(datetime.now(timezone.utc))),
              *list_headers(forum, domain, personal=False)]
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


def mime_digest(site, forum: dict, digest: dict, posts: list[dict], language: str,
                parts: list[bytes]) -> bytes:
    """multipart/mixed: the table of contents, then multipart/digest of the posts
    (`parts`: each post as `_as_part` gives it)."""
    settings = site.settings
    domain = settings.domain
    subject, toc = _toc(site, forum, digest, posts, language, plain=False)
    addresses = forum_addresses(forum["slug"], domain)
    headers = dict(list_headers(forum, domain, personal=bool(settings.web.url)))
    message = compose(sender=addresses["request"], to=addresses["post"],
                      subject=prefixed_subject(subject, forum["slug"]), text=toc,
                      domain=domain, headers=headers)
    del message["Message-ID"]
    message["Message-ID"] = f"<{digest['key'].replace(':', '.')}.{language}@{domain}>"
    message.make_mixed()
    outer, inner = _boundary(parts), _boundary(parts)
    message.set_boundary(outer)
    data = to_bytes(message)
    eight_bit = any(not part.isascii() for part in parts)
    cte = b"Content-Transfer-Encoding: 8bit\r\n" if eight_bit else b""
    block = b"".join([f"--{outer}\r\n".encode(),
                      f'Content-Type: multipart/digest; boundary="{inner}"\r\n'.encode(), cte,
                      b"\r\n"]
                     + [f"--{inner}\r\nContent-Type: message/rfc822\r\n".encode() + cte
                        + b"\r\n" + part + b"\r\n" for part in parts]
                     + [f"--{inner}--\r\n".encode()])
    closing = f"--{outer}--".encode()
    at = data.rindex(closing)
    if eight_bit:  # the outer part must say so too
        head_end = data.index(b"\r\n\r\n")
        data = data[:head_end] + b"\r\n" + cte.rstrip() + data[head_end:]
        at = data.rindex(closing)
    return data[:at] + block + data[at:]


def _boundary(parts: list[bytes]) -> str:
    while True:
        candidate = f"==digest-{secrets.token_hex(12)}"
        if not any(candidate.encode() in part for part in parts):
            return candidate


def _as_part(post: dict, forum: dict, domain: str) -> bytes:
    """The post as it went to `each` members (HTML sanitised), without the list's
    own headers; the plain text when it cannot be rendered again."""
    try:
        copy = render_post(post["raw"], forum, domain, False, post["header_id"])
    except MessageError:
        fallback = compose(sender=f"{forum['slug']}@{domain}", to=f"{forum['slug']}@{domain}",
                           subject=post["subject"], text=post["text"], domain=domain)
        return to_bytes(fallback).rstrip(b"\r\n") + b"\r\n"
    head, _, body = copy.partition(b"\r\n\r\n")
    kept, keep = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if keep:
                kept.append(line)
            continue
        match = _FIELD.match(line)
        keep = bool(match) and match.group(1).decode("ascii").lower() in KEPT_HEADERS
        if keep:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n\r\n" + body.rstrip(b"\r\n") + b"\r\n"
