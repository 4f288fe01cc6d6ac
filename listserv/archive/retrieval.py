"""The archive by email: `index`, `get REF` and `search WORDS`.

At `FORUM-request@`: `index` gives the forum's recent threads with their
references, `get peace-42` (or `get 42`) a post in full, `get peace-t42`
(or `t42`) a whole thread, `search WORDS` a numbered list of references.
At `whatsnew-request@`, `search` looks through the public archives and the
initiatives, and `get` takes any post reference. A `members` archive
answers only its members; to anyone else it is as if nothing were there
(nothing revealed, not even that the post exists); a `none` archive has
nothing. Texts are whole (never a bulletin's trimmed lines), rendered from
the `archive-*.txt` templates in the asker's language; `send_document`
sends lowband readers plain text under their byte budget, in numbered
parts. Reads the store; queues replies through notify.send_text.
"""

from __future__ import annotations

import textwrap
from datetime import datetime

from listserv.archive.keep import parse_ref
from listserv.archive.pages import tree_order
from listserv.archive.search import SearchError, clip, search
from listserv.delivery.dkim import signature_room
from listserv.delivery.notify import send_text
from listserv.mail.templates import render_mail
from listserv.site import members

INDEX_THREADS = 30
MAX_THREAD_POSTS = 500
PART_ROOM = 1200  # bytes of a part's budget left for its headers and part line


def readable(db, forum: dict, address: str) -> bool:
    """May `address` read what forum `forum` kept?"""
    if forum["archive"] == "public":
        return True
    if forum["archive"] == "members":
        return members.find(db, forum["id"], address) is not None
    return False


def _forum_by_slug(db, slug: str) -> dict | None:
    rows = list(db.query("SELECT * FROM forums WHERE slug = ?", [slug]))
    return rows[0] if rows else None


def _render(site, name: str, language: str, **context) -> tuple[str, str]:
    return render_mail(site.active_templates, name, language, site={
        "name": site.settings.site.name, "domain": site.settings.domain}, **context)


def _request(site, forum: dict) -> str:
    return f"{forum['slug']}-request@{site.settings.domain}"


def forum_index(db, site, forum: dict, address: str, language: str) -> tuple[str, str] | None:
    """The forum's recent threads with references; None when there is nothing the
    asker may read."""
    if not readable(db, forum, address):
        return None
    threads = [{"ref": f"{forum['slug']}-t{t}", "subject": s or "(no subject)",
                "count": c, "date": d[:10]}
               for t, s, d, c in db.execute(
                   "SELECT a.thread_id, (SELECT subject FROM archive_posts r WHERE r.post_id = "
                   "a.thread_id), max(a.date) AS last, count(*) FROM archive_posts a "
                   "WHERE a.forum_id = ? AND a.status = 'kept' GROUP BY a.thread_id "
                   "ORDER BY last DESC, a.thread_id DESC LIMIT ?", [forum["id"], INDEX_THREADS])]
    if not threads:
        return None
    return _render(site, "archive-index.txt", language, forum=forum, threads=threads,
                   request=_request(site, forum))


def _post_rows(db, forum: dict, thread: bool, number: int) -> list[dict]:
    column = "thread_id" if thread else "post_id"
    rows = list(db.query(f"SELECT * FROM archive_posts WHERE {column} = ? AND forum_id = ? "
                         f"AND status = 'kept' ORDER BY date, post_id LIMIT ?",
                         [number, forum["id"], MAX_THREAD_POSTS]))
    return tree_order(rows) if thread else rows


def document(db, site, here: dict | None, ref: str, address: str,
             language: str) -> tuple[str, str] | None:
    """A post or a thread in full for `get REF` sent to forum `here`'s -request
    (None: at whatsnew-request, where REF must name its forum); None when there
    is no such thing the asker may read."""
    parsed = parse_ref(ref)
    if parsed is None:
        return None
    slug, thread, number = parsed
    forum = _forum_by_slug(db, slug) if slug else here
    if forum is None or not readable(db, forum, address):
        return None
    rows = _post_rows(db, forum, thread, number)
    if not rows:
        return None
    posts = []
    for row in rows:
        files = [f"{name or 'attachment'} ({kind}, {size} bytes)" for name, kind, size in
                 db.execute("SELECT filename, content_type, size FROM archive_attachments "
                            "WHERE post_id = ? ORDER BY number", [row["post_id"]])]
        posts.append({"ref": f"{forum['slug']}-{row['post_id']}", "subject": row["subject"]
                      or "(no subject)", "author": row["author"],
                      "date": row["date"][:16].replace("T", " "), "text": row["text"],
                      "attachments": files})
    return _render(site, "archive-document.txt", language, forum=forum, posts=posts,
                   thread=f"{forum['slug']}-t{rows[0]['thread_id']}" if thread else "",
                   request=_request(site, forum))


def search_document(db, site, here: dict | None, words: str, address: str,
                    language: str) -> tuple[str, str] | None:
    """The numbered results of `search WORDS` at forum `here`'s -request (its own
    posts, when the asker may read them) or at whatsnew-request (public archives
    and initiatives); None when nothing was found. SearchError when there are no
    words to look for."""
    if here is not None:
        scope, initiatives = ([here["slug"]] if readable(db, here, address) else []), False
    else:
        scope = [slug for (slug,) in db.execute(
            "SELECT slug FROM forums WHERE archive = 'public' ORDER BY slug")]
        initiatives = True
    results = search(db, clip(words), forums=scope, initiatives=initiatives)
    if not results:
        return None
    return _render(site, "archive-search.txt", language, results=results,
                   words=" ".join(words.split())[:200],
                   request=_request(site, here) if here else "")


def is_lowband(db, address: str) -> bool:
    """Does `address` read by lowband (as a bulletin reader or in any forum)?"""
    return db.execute("SELECT 1 FROM bulletin_readers WHERE address = ? AND profile = "
                      "'lowband' UNION ALL SELECT 1 FROM members WHERE address = ? AND "
                      "profile = 'lowband' LIMIT 1", [address.lower(), address.lower()]
                      ).fetchone() is not None


def split_parts(text: str, budget: int) -> list[str]:
    """Plain text wrapped at 72 columns, in parts of at most `budget` bytes each
    with room for the headers; a part line is added when there are several."""
    lines = []
    for paragraph in text.replace("\r\n", "\n").split("\n"):
        lines.extend(textwrap.wrap(paragraph, 72, break_long_words=True,
                                   break_on_hyphens=False) or [""])
    room = max(budget - PART_ROOM, 500)
    chunks, current = [], ""
    for line in lines:
        line += "\n"
        if current and len((current + line).encode("utf-8")) > room:
            chunks.append(current)
            current = ""
        current += line
    chunks.append(current)
    if len(chunks) == 1:
        return chunks
    return [f"[part {n} of {len(chunks)}]\n\n{chunk}" for n, chunk in enumerate(chunks, 1)]


def send_document(db, site, *, to: str, found: tuple[str, str], ref: str, now: datetime,
                  forum: dict | None, in_reply_to: str, lowband: bool, budget: int,
                  sender: str = "") -> int:
    """Queue a fetched document to `to`: whole, or for a lowband reader in numbered
    parts of at most `budget` bytes. Returns the number of messages."""
    subject, text = found
    parts = split_parts(text, budget - signature_room(site.settings)) if lowband else [text]
    for number, part in enumerate(parts, 1):
        send_text(db, site, to=to, subject=subject if len(parts) == 1
                  else f"{subject} ({number}/{len(parts)})", text=part,
                  ref=ref if len(parts) == 1 else f"{ref}:{number}", now=now, forum=forum,
                  in_reply_to=in_reply_to, sender=sender)
    return len(parts)


__all__ = ["SearchError", "clip", "document", "forum_index", "is_lowband", "readable",
           "search_document", "send_document", "split_parts"]
