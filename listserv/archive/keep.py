"""Keeping posts in the archive: what is kept of each, its thread, and taking one out.

`archive_pending(db, now, limit)` is the store side of the archive stage: it
takes distributed posts the stage has not looked at yet (`posts.archive_status`
NULL), and for each either keeps it (`kept`: a row of `archive_posts`, its
attachments, its words in the search index, and the pages it changes marked
to be written) or leaves it out (`skipped`: the forum's archive is `none`,
or the post says `X-No-Archive: yes` / `Archive: no`). Running it twice
keeps nothing twice. `remove_post` takes a post out at an ally's request:
its text, attachments and search entry are deleted, the pages it was on are
marked again. Addresses are never kept in full: `mask` makes `ana at example…`.
Writes archive_posts, archive_attachments, archive_search, archive_dirty and
posts.archive_status. Will not write any file (pages.py does).
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from datetime import datetime, timezone
from email.message import Message
from email.utils import getaddresses

import bleach
from bleach.linkifier import Linker

from listserv.errors import ListservError, NotFound
from listserv.mail.headers import clean_header_value, decode_header_text
from listserv.mail.message import raw_header
from listserv.mail.text import DANGEROUS_BLOCKS, decode_payload, html_to_text

log = logging.getLogger(__name__)

SUBJECT_LIMIT = 300  # characters of a subject shown on a page
TEXT_LIMIT = 200_000  # characters of a post's text kept
MAX_ATTACHMENTS = 50
REFERENCES_READ = 30  # the last References read to find the parent
SEARCH_TEXT = 100_000  # characters of a post indexed for search

ALLOWED_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3",
                "h4", "hr", "i", "li", "ol", "p", "pre", "span", "strong", "table", "tbody",
                "td", "th", "thead", "tr", "u", "ul"}
ALLOWED_ATTRIBUTES = {"a": ["href"], "td": ["colspan", "rowspan"],
                      "th": ["colspan", "rowspan"]}

_ADDRESS = re.compile(r"([\w.+%-]{1,64})@([\w-]{1,63})((?:\.[\w-]{1,63})+)", re.UNICODE)
_REPLY = re.compile(r"^\s*((re|aw|sv|rv|fwd?|tr|enc)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_TAG = re.compile(r"^\s*\[[^\]]{1,60}\]\s*")
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,250})>")


def mask(text: str) -> str:
    """Every address in `text` written as 'ana at example…'."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)} at {m.group(2)}\u2026", text)


def author_of(message: Message) -> str:
    """The name the post was signed with, else its address masked; one line."""
    value = decode_header_text(raw_header(message, "From"))
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = []
    name, address = pairs[0] if pairs else ("", "")
    name = clean_header_value(name, 80).strip(" \"'")
    if name and "@" not in name:
        return name
    return mask(address or value)[:80] or "?"


def topic_of(subject: str) -> str:
    """A subject without reply prefixes and list tags, folded, for threading."""
    rest = subject
    for _ in range(5):
        before = rest
        rest = _TAG.sub("", _REPLY.sub("", rest))
        if rest == before:
            break
    return " ".join(rest.lower().split())[:200]


def is_reply_subject(subject: str) -> bool:
    return bool(_REPLY.match(_TAG.sub("", subject)))


def wants_no_archive(message: Message) -> bool:
    """X-No-Archive: yes, or Archive: no (RFC 5064's companion convention)."""
    no = (message.get("X-No-Archive") or "").strip().lower()
    archive = (message.get("Archive") or "").strip().lower()
    return no.startswith("yes") or archive.startswith("no")


def _rel(attrs, new=False):
    attrs[(None, "rel")] = "nofollow ugc noopener noreferrer"
    return attrs


def sanitise_archive_html(html: str) -> str:
    """A post's HTML as a page may show it: formatting and http(s) links only
    (no scripts, handlers, styles, forms, frames, images, SVG, base or meta),
    links marked nofollow, addresses masked."""
    html = DANGEROUS_BLOCKS.sub("", html)
    cleaned = bleach.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                           protocols={"http", "https"}, strip=True, strip_comments=True)
    linked = Linker(callbacks=[_rel], skip_tags={"pre", "code"}, parse_email=False)
    return mask(linked.linkify(cleaned))


def read_parts(message: Message, content: str) -> tuple[str, str, list[dict]]:
    """(text, sanitised html, attachments) of a post."""
    text = html = ""
    attachments: list[dict] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = part.get_filename()
        if disposition != "attachment" and not filename and kind == "text/plain" and not text:
            text = decode_payload(part)[:TEXT_LIMIT]
        elif disposition != "attachment" and not filename and kind == "text/html" and not html:
            html = decode_payload(part)[:TEXT_LIMIT * 2]
        elif len(attachments) < MAX_ATTACHMENTS and (filename or disposition == "attachment"
                                                     or part.get_content_maintype() != "text"):
            data = part.get_payload(decode=True) or b""
            attachments.append({"filename": decode_header_text(filename or "") or "",
                                "content_type": kind, "data": data})
    if not text and html:
        text = html_to_text(html)[:TEXT_LIMIT]
    shown = sanitise_archive_html(html) if html and content == "html" else ""
    return mask(text), shown, attachments


def _parent(db, forum_id: int, message: Message, topic: str, subject: str):
    wanted = _MESSAGE_ID.findall(raw_header(message, "In-Reply-To") or "")[:1]
    wanted += list(reversed(_MESSAGE_ID.findall(raw_header(message, "References") or "")
                            [-REFERENCES_READ:]))
    for header_id in wanted:
        row = db.execute("SELECT post_id, thread_id, depth FROM archive_posts WHERE "
                         "forum_id = ? AND header_id = ? AND status = 'kept'",
                         [forum_id, header_id]).fetchone()
        if row:
            return row
    if topic and is_reply_subject(subject):  # a client that dropped the references
        return db.execute("SELECT post_id, thread_id, depth FROM archive_posts WHERE "
                          "forum_id = ? AND topic = ? AND status = 'kept' "
                          "ORDER BY date DESC, post_id DESC LIMIT 1",
                          [forum_id, topic]).fetchone()
    return None


def keep_post(db, post: dict, forum: dict, raw: bytes, now: datetime) -> str:
    """Keep one distributed post; returns its archive status ('kept' or 'skipped')."""
    if forum.get("archive", "members") == "none":
        return "skipped"
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    if wants_no_archive(message):
        return "skipped"
    subject = decode_header_text(raw_header(message, "Subject"))
    try:
        text, html, attachments = read_parts(message, forum.get("content", "html"))
    except Exception as error:  # hostile structure: keep what the headers say
        log.warning("post %s on %s: parts unreadable for the archive: %s", post["id"],
                    forum["slug"], error)
        text, html, attachments = "", "", []
    topic = topic_of(subject)
    parent = _parent(db, forum["id"], message, topic, subject)
    when = post.get("distributed_at") or now.isoformat()
    date = datetime.fromisoformat(when).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    shown_subject = mask(clean_header_value(subject, SUBJECT_LIMIT + 1))
    if len(shown_subject) > SUBJECT_LIMIT:
        shown_subject = shown_subject[:SUBJECT_LIMIT - 1] + "\u2026"
    db["archive_posts"].insert({
        "post_id": post["id"], "forum_id": forum["id"], "header_id": post["header_id"],
        "parent_id": parent[0] if parent else None,
        "thread_id": parent[1] if parent else post["id"],
        "depth": parent[2] + 1 if parent else 0, "topic": topic, "month": date[:7],
        "date": date, "subject": shown_subject, "author": author_of(message), "text": text,
        "html": html, "attachments": len(attachments), "status": "kept"}, ignore=True)
    for number, attachment in enumerate(attachments, 1):
        db["archive_attachments"].insert({
            "post_id": post["id"], "number": number,
            "filename": attachment["filename"], "content_type": attachment["content_type"],
            "size": len(attachment["data"]), "data": attachment["data"]}, ignore=True)
    db.execute("INSERT OR REPLACE INTO archive_search (rowid, subject, body, forum) "
               "VALUES (?, ?, ?, ?)", [post["id"], shown_subject, text[:SEARCH_TEXT],
                                       forum["slug"]])
    mark_post(db, forum["id"], post["id"])
    return "kept"


def mark(db, forum_id: int, *whats: str) -> None:
    """Pages to (re)write: 'post:N', 'thread:N', 'month:YYYY-MM', 'forum'; forum 0
    for the site's own pages ('directory', 'bank', 'issue:N')."""
    db.conn.executemany("INSERT INTO archive_dirty (forum_id, what) VALUES (?, ?) "
                   "ON CONFLICT (forum_id, what) DO UPDATE SET gen = gen + 1",
                   [(forum_id, what) for what in whats])


def mark_post(db, forum_id: int, post_id: int) -> None:
    """The pages one post is on: its own, its neighbours', its thread, month, forum."""
    row = db.execute("SELECT thread_id, month, date FROM archive_posts WHERE post_id = ?",
                     [post_id]).fetchone()
    if row is None:
        return
    thread_id, month, date = row
    whats = [f"post:{post_id}", f"thread:{thread_id}", f"month:{month}", "forum"]
    for sql in ("SELECT post_id FROM archive_posts WHERE forum_id = ? AND status = 'kept' AND "
                "(date < ? OR (date = ? AND post_id < ?)) ORDER BY date DESC, post_id DESC "
                "LIMIT 1",
                "SELECT post_id FROM archive_posts WHERE forum_id = ? AND status = 'kept' AND "
                "(date > ? OR (date = ? AND post_id > ?)) ORDER BY date, post_id LIMIT 1"):
        near = db.execute(sql, [forum_id, date, date, post_id]).fetchone()
        if near:
            whats.append(f"post:{near[0]}")
    mark(db, forum_id, *whats)
    mark(db, 0, "directory")


def archive_pending(db, now: datetime, limit: int = 50) -> int:
    """Look at up to `limit` distributed posts not yet seen by the archive; returns
    how many were taken."""
    rows = list(db.query("SELECT * FROM posts WHERE status = 'distributed' AND "
                         "archive_status IS NULL ORDER BY id LIMIT ?", [limit]))
    forums: dict[int, dict] = {}
    for post in rows:
        forum = forums.get(post["forum_id"])
        if forum is None:
            forum = forums[post["forum_id"]] = db["forums"].get(post["forum_id"])
        raw = db.execute("SELECT raw FROM messages WHERE id = ?",
                         [post["message_id"]]).fetchone()
        status = keep_post(db, post, forum, raw[0], now) if raw else "skipped"
        db.execute("UPDATE posts SET archive_status = ? WHERE id = ?", [status, post["id"]])
        log.info("archive: post %s (%s) on %s %s", post["id"], post["header_id"],
                 forum["slug"], status)
    return len(rows)


_REF = re.compile(r"^(?:(?P<slug>[a-z0-9][a-z0-9-]*?)-)?(?P<thread>t)?(?P<number>\d{1,12})$",
                  re.IGNORECASE)


def parse_ref(ref: str) -> tuple[str, bool, int] | None:
    """('slug' or '', is_thread, number) of 'peace-42', 'peace-t42', '42' or 't42'."""
    match = _REF.match(ref.strip())
    if not match:
        return None
    return (match.group("slug") or "").lower(), bool(match.group("thread")), \
        int(match.group("number"))


def remove_post(db, ref: str, now: datetime) -> dict:
    """Take post REF ('peace-42') out of the pages, feeds and search; NotFound when
    there is no such archived post. Removing twice changes nothing more."""
    parsed = parse_ref(ref)
    if parsed is None or not parsed[0] or parsed[1]:
        raise ListservError(f"'{ref}' is not a post reference; write it as FORUM-NUMBER, "
                            f"e.g. 'peace-42' (see the post's page or 'get' by email)")
    slug, _, number = parsed
    with db.atomic():
        row = db.execute("SELECT a.post_id, a.forum_id, a.status FROM archive_posts a JOIN "
                         "forums f ON f.id = a.forum_id WHERE f.slug = ? AND a.post_id = ?",
                         [slug, number]).fetchone()
        if row is None:
            raise NotFound(f"no archived post '{ref}' (the reference is on the post's page)")
        post_id, forum_id, status = row
        if status == "kept":
            mark_post(db, forum_id, post_id)  # while it still has neighbours
            db.execute("UPDATE archive_posts SET status = 'removed', text = '', html = '', "
                       "subject = '', author = '', attachments = 0 WHERE post_id = ?",
                       [post_id])
            db.execute("DELETE FROM archive_attachments WHERE post_id = ?", [post_id])
            db.execute("DELETE FROM archive_search WHERE rowid = ?", [post_id])
            db.execute("INSERT INTO events (at, forum_id, kind, detail) VALUES (?, ?, ?, ?)",
                       [now.isoformat(), forum_id, "archive-removed", f"post {post_id}"])
    return {"ref": f"{slug}-{post_id}", "forum_id": forum_id, "was": status}


def decode_attachment_name(name: str) -> str:
    """A file name safe in a URL and on disk: letters, digits, '.', '-', '_'."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]
    return base or "attachment"

