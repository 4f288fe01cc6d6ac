"""The web archive's pages: written from the store, the same bytes every time.

For each forum whose archive is `public`, under `data/archive/SLUG/`:
`index.html` (months and recent threads), `YYYY-MM.html` (the month's posts
by thread), `tN.html` (a whole thread), `N.html` (one post: text, sanitised
HTML, attachments, previous/next, its thread), `att/N-K-NAME` (attachments)
and `feed.atom`. The chrome comes from the `archive-*.html` templates in the
forum's language, its words from `archive-labels.txt`. Pages are plain HTML
and one stylesheet: no script, no external resource, relative links (so any
web server can serve the folder). `write_marked(site, db)` writes what
`archive_dirty` asks and returns the rows it did (the caller clears them);
`write_forum` writes every page of a forum (rebuild). A forum whose archive
is not public has no folder: writing its pages removes it. Reads the store;
writes files only, each atomically and only when its bytes change.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from listserv.archive import feeds
from listserv.archive.keep import decode_attachment_name
from listserv.mail.templates import render

log = logging.getLogger(__name__)

RECENT_THREADS = 30
MAX_INDENT = 12
LABEL_KEYS = ("archive", "archives", "forum", "forums", "month", "months", "thread", "threads",
              "post", "posts", "previous", "next", "in_reply_to", "attachments", "feed", "join",
              "members", "language", "directory", "thematic", "socioprofessional",
              "geocultural", "initiatives", "search", "search_button", "results", "no_results",
              "by_path", "by_region", "by_forum", "by_month", "whatsnew", "issue", "by_email",
              "replies", "empty", "elsewhere", "more", "bytes", "search_hint", "removed")

STYLE = """body{font:16px/1.5 sans-serif;max-width:50em;margin:0 auto;padding:0 1em;color:#222}
header,footer{border-bottom:1px solid #ccc;padding:.5em 0;font-size:.9em}
footer{border-top:1px solid #ccc;border-bottom:0;margin-top:2em;color:#555}
pre.text{white-space:pre-wrap;word-wrap:break-word;font:inherit}
.meta{color:#555;font-size:.9em}.html{border-left:3px solid #ddd;padding-left:1em}
ul.posts{list-style:none;padding-left:0}nav.pn{display:flex;justify-content:space-between}
""" + "".join(f".d{n}{{margin-left:{n * 1.2:.1f}em}}" for n in range(1, MAX_INDENT + 1)) + "\n"


def root(site) -> Path:
    return site.data / "archive"


def write_file(path: Path, data: bytes | str) -> bool:
    """Write atomically, and only when the bytes differ; True when written."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return True


_LABELS: dict[tuple[str, str], dict[str, str]] = {}  # for one round of writing


def labels(site, language: str) -> dict[str, str]:
    """The words of the pages ("key: text" lines of archive-labels.txt)."""
    key = (str(site.active_templates), language)
    if key not in _LABELS:
        _LABELS[key] = _read_labels(site, language)
    return _LABELS[key]


def _read_labels(site, language: str) -> dict[str, str]:
    text = render(site.active_templates, "archive-labels.txt", language)
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in LABEL_KEYS and value.strip():
            found[key.strip()] = " ".join(value.split())[:200]
    return {key: found.get(key, key.replace("_", " ")) for key in LABEL_KEYS}


def page(site, name: str, language: str, **context) -> str:
    return render(site.active_templates, name, language, labels=labels(site, language),
                  site_name=site.settings.site.name, domain=site.settings.domain,
                  lang=language, **context)


def _forum(db, forum_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM forums WHERE id = ?", [forum_id]))
    return rows[0] if rows else None


def _summary(row: dict) -> dict:
    return {"id": row["post_id"], "subject": row["subject"] or "(no subject)",
            "author": row["author"], "date": row["date"][:16].replace("T", " "),
            "depth": min(row["depth"], MAX_INDENT), "thread": row["thread_id"],
            "month": row["month"]}


def tree_order(rows: list[dict]) -> list[dict]:
    """A thread's posts parent before children, siblings by date (no recursion:
    a thread may be hundreds deep)."""
    ids = {row["post_id"] for row in rows}
    children: dict[int | None, list[dict]] = {}
    for row in rows:
        parent = row["parent_id"] if row["parent_id"] in ids else None
        children.setdefault(parent, []).append(row)
    ordered, stack = [], list(reversed(children.get(None, [])))
    while stack:
        row = stack.pop()
        ordered.append(row)
        stack.extend(reversed(children.get(row["post_id"], [])))
    return ordered


def attachments_of(db, post_id: int) -> list[dict]:
    return [{"number": number, "name": filename or f"attachment-{number}",
             "file": f"att/{post_id}-{number}-{decode_attachment_name(filename)}",
             "type": kind, "size": size}
            for number, filename, kind, size in db.execute(
                "SELECT number, filename, content_type, size FROM archive_attachments "
                "WHERE post_id = ? ORDER BY number", [post_id])]


def render_post_page(site, db, forum: dict, post_id: int) -> str | None:
    rows = list(db.query("SELECT * FROM archive_posts WHERE post_id = ? AND status = 'kept'",
                         [post_id]))
    if not rows:
        return None
    row = rows[0]
    near = {}
    for key, sql in (("previous", "(date < :d OR (date = :d AND post_id < :p)) "
                                  "ORDER BY date DESC, post_id DESC"),
                     ("next", "(date > :d OR (date = :d AND post_id > :p)) "
                              "ORDER BY date, post_id")):
        found = list(db.query("SELECT * FROM archive_posts WHERE forum_id = :f AND status = "
                              f"'kept' AND {sql} LIMIT 1",
                              {"f": forum["id"], "d": row["date"], "p": post_id}))
        near[key] = _summary(found[0]) if found else None
    parent = None
    if row["parent_id"]:
        found = list(db.query("SELECT * FROM archive_posts WHERE post_id = ? AND "
                              "status = 'kept'", [row["parent_id"]]))
        parent = _summary(found[0]) if found else None
    replies = [_summary(r) for r in db.query(
        "SELECT * FROM archive_posts WHERE parent_id = ? AND status = 'kept' "
        "ORDER BY date, post_id", [post_id])]
    return page(site, "archive-post.html", forum["language"], forum=forum,
                post={**_summary(row), "text": row["text"], "html": row["html"],
                      "ref": f"{forum['slug']}-{post_id}"},
                attachments=attachments_of(db, post_id), parent=parent, replies=replies,
                **near)


def render_thread_page(site, db, forum: dict, thread_id: int) -> str | None:
    rows = list(db.query("SELECT * FROM archive_posts WHERE thread_id = ? AND forum_id = ? "
                         "AND status = 'kept' ORDER BY date, post_id", [thread_id, forum["id"]]))
    if not rows:
        return None
    posts = [{**_summary(r), "text": r["text"], "html": r["html"],
              "ref": f"{forum['slug']}-{r['post_id']}"} for r in tree_order(rows)]
    return page(site, "archive-thread.html", forum["language"], forum=forum, posts=posts,
                thread={"id": thread_id, "subject": posts[0]["subject"],
                        "ref": f"{forum['slug']}-t{thread_id}", "month": posts[0]["month"]})


def month_threads(db, forum_id: int, month: str) -> list[dict]:
    """The month's posts grouped by thread, threads by their first post there."""
    threads: dict[int, list[dict]] = {}
    for row in db.query("SELECT post_id, parent_id, thread_id, depth, subject, author, date, "
                        "month FROM archive_posts WHERE forum_id = ? AND month = ? AND "
                        "status = 'kept' ORDER BY date, post_id", [forum_id, month]):
        threads.setdefault(row["thread_id"], []).append(row)
    return [{"id": thread_id, "posts": [_summary(r) for r in tree_order(rows)]}
            for thread_id, rows in threads.items()]


def render_month_page(site, db, forum: dict, month: str) -> str | None:
    threads = month_threads(db, forum["id"], month)
    if not threads:
        return None
    months = [m for (m,) in db.execute("SELECT DISTINCT month FROM archive_posts WHERE "
                                       "forum_id = ? AND status = 'kept' ORDER BY month",
                                       [forum["id"]])]
    at = months.index(month) if month in months else -1
    return page(site, "archive-month.html", forum["language"], forum=forum, month=month,
                threads=threads, count=sum(len(t["posts"]) for t in threads),
                previous=months[at - 1] if at > 0 else None,
                next=months[at + 1] if 0 <= at < len(months) - 1 else None)


def render_forum_page(site, db, forum: dict) -> str:
    months = [{"month": m, "count": c} for m, c in db.execute(
        "SELECT month, count(*) FROM archive_posts WHERE forum_id = ? AND status = 'kept' "
        "GROUP BY month ORDER BY month DESC", [forum["id"]])]
    threads = [{"id": t, "subject": s or "(no subject)", "date": d[:10], "count": c}
               for t, s, d, c in db.execute(
                   "SELECT a.thread_id, (SELECT subject FROM archive_posts r WHERE r.post_id = "
                   "a.thread_id), max(a.date) AS last, count(*) FROM archive_posts a "
                   "WHERE a.forum_id = ? AND a.status = 'kept' GROUP BY a.thread_id "
                   "ORDER BY last DESC, a.thread_id DESC LIMIT ?",
                   [forum["id"], RECENT_THREADS])]
    members = db.execute("SELECT count(*) FROM members WHERE forum_id = ?",
                         [forum["id"]]).fetchone()[0]
    return page(site, "archive-forum.html", forum["language"], forum=forum, months=months,
                threads=threads, members=members,
                join=f"{forum['slug']}-join@{site.settings.domain}",
                request=f"{forum['slug']}-request@{site.settings.domain}")


def write_attachments(site, db, forum: dict, post_id: int) -> None:
    folder = root(site) / forum["slug"] / "att"
    for number, filename, data in db.execute(
            "SELECT number, filename, data FROM archive_attachments WHERE post_id = ?",
            [post_id]):
        write_file(folder / f"{post_id}-{number}-{decode_attachment_name(filename)}", data)


def remove_post_files(site, forum: dict, post_id: int) -> None:
    folder = root(site) / forum["slug"]
    (folder / f"{post_id}.html").unlink(missing_ok=True)
    for path in (folder / "att").glob(f"{post_id}-*"):
        path.unlink(missing_ok=True)


def write_one(site, db, forum: dict, what: str) -> None:
    """Write the page `what` ('post:N', 'thread:N', 'month:M', 'forum') of `forum`."""
    folder = root(site) / forum["slug"]
    kind, _, key = what.partition(":")
    if kind == "post":
        html = render_post_page(site, db, forum, int(key))
        if html is None:
            remove_post_files(site, forum, int(key))
        else:
            write_file(folder / f"{key}.html", html)
            write_attachments(site, db, forum, int(key))
    elif kind == "thread":
        html = render_thread_page(site, db, forum, int(key))
        if html is None:
            (folder / f"t{key}.html").unlink(missing_ok=True)
        else:
            write_file(folder / f"t{key}.html", html)
    elif kind == "month":
        html = render_month_page(site, db, forum, key)
        if html is None:
            (folder / f"{key}.html").unlink(missing_ok=True)
        else:
            write_file(folder / f"{key}.html", html)
    elif kind == "forum":
        write_file(folder / "index.html", render_forum_page(site, db, forum))
        write_file(folder / "feed.atom", feeds.forum_feed(site, db, forum))
    write_file(root(site) / "style.css", STYLE)


def write_forum(site, db, forum: dict) -> int:
    """Every page of one forum, from the store (rebuild); files no longer backed
    by the store are removed. Returns how many pages were rendered."""
    folder = root(site) / forum["slug"]
    _LABELS.clear()  # the site's templates may have changed since the last round
    if forum["archive"] != "public":
        shutil.rmtree(folder, ignore_errors=True)
        return 0
    wanted: set[str] = {"index.html", "feed.atom"}
    count = 0
    months = [m for (m,) in db.execute("SELECT DISTINCT month FROM archive_posts WHERE "
                                       "forum_id = ? AND status = 'kept'", [forum["id"]])]
    threads = [t for (t,) in db.execute("SELECT DISTINCT thread_id FROM archive_posts WHERE "
                                        "forum_id = ? AND status = 'kept'", [forum["id"]])]
    posts = [p for (p,) in db.execute("SELECT post_id FROM archive_posts WHERE forum_id = ? "
                                      "AND status = 'kept'", [forum["id"]])]
    for what in ([f"post:{p}" for p in posts] + [f"thread:{t}" for t in threads]
                 + [f"month:{m}" for m in months] + ["forum"]):
        write_one(site, db, forum, what)
        count += 1
    wanted |= {f"{p}.html" for p in posts} | {f"t{t}.html" for t in threads} \
        | {f"{m}.html" for m in months}
    attachments = {a["file"].split("/", 1)[1] for p in posts for a in attachments_of(db, p)}
    for path in folder.glob("*"):
        if path.is_file() and path.name not in wanted:
            path.unlink()
    for path in (folder / "att").glob("*"):
        if path.name not in attachments:
            path.unlink()
    return count


def write_marked(site, db, rows: list[tuple[int, str, int]], site_pages) -> list:
    """Write the pages of `rows` (forum_id, what, gen) from `archive_dirty`; the
    site's own pages (forum 0) through `site_pages(site, db, what)`. Returns
    the rows done, for the caller to clear."""
    done, forums = [], {}
    _LABELS.clear()  # the site's templates may have changed since the last round
    for forum_id, what, gen in rows:
        if forum_id == 0:
            site_pages(site, db, what)
        else:
            if forum_id not in forums:
                forums[forum_id] = _forum(db, forum_id)
            forum = forums[forum_id]
            if forum is None:
                pass
            elif forum["archive"] != "public":
                shutil.rmtree(root(site) / forum["slug"], ignore_errors=True)
            else:
                write_one(site, db, forum, what)
        done.append((forum_id, what, gen))
    return done
