"""Atom feeds (RFC 4287) of the archive, made with feedgen.

`forum_feed` gives a public forum's latest posts, `issues_feed` the What's
New issues; entries carry the page's URL (absolute under `[web] url`, else
relative to the archive) and a text summary. The feed's `updated` is its
newest entry's date, so the bytes are the same on every rebuild. Reads the
store; writes nothing.
"""

from __future__ import annotations

from datetime import datetime, timezone

from feedgen.feed import FeedGenerator

from listserv.archive.links import base

FEED_SIZE = 50
SUMMARY = 600


def _when(stamp: str) -> datetime:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _feed(feed_id: str, title: str, link: str, self_link: str, language: str,
          updated: str) -> FeedGenerator:
    feed = FeedGenerator()
    feed.id(feed_id)
    feed.title(title)
    feed.link(href=link, rel="alternate")
    feed.link(href=self_link, rel="self")
    feed.language(language)
    feed.updated(_when(updated))
    feed.generator("listserv")
    return feed


def _text(text: str) -> str:
    text = " ".join(text.split())
    return text[:SUMMARY] + ("\u2026" if len(text) > SUMMARY else "")


def forum_feed(site, db, forum: dict) -> bytes:
    where = base(site.settings.web.url)
    home = f"{where}/{forum['slug']}/" if where else "./"
    rows = list(db.query("SELECT post_id, subject, author, date, text FROM archive_posts "
                         "WHERE forum_id = ? AND status = 'kept' ORDER BY date DESC, "
                         "post_id DESC LIMIT ?", [forum["id"], FEED_SIZE]))
    feed = _feed(f"tag:{site.settings.domain},2026:archive/{forum['slug']}", forum["title"],
                 home, home + "feed.atom" if where else "feed.atom", forum["language"],
                 rows[0]["date"] if rows else forum["created_at"])
    for row in rows:
        entry = feed.add_entry(order="append")
        url = f"{home}{row['post_id']}.html" if where else f"{row['post_id']}.html"
        entry.id(f"tag:{site.settings.domain},2026:archive/{forum['slug']}/{row['post_id']}")
        entry.title(row["subject"] or "(no subject)")
        entry.author(name=row["author"] or "?")
        entry.link(href=url, rel="alternate")
        entry.updated(_when(row["date"]))
        entry.published(_when(row["date"]))
        entry.summary(_text(row["text"]))
    return feed.atom_str(pretty=True)


def issues_feed(site, issues: list[dict], title: str, language: str) -> bytes:
    """The What's New issues, newest first: dicts of number, title, date, text."""
    where = base(site.settings.web.url)
    home = f"{where}/whatsnew/" if where else "./"
    newest = issues[0]["date"] if issues else "2026-01-01T00:00:00+00:00"
    feed = _feed(f"tag:{site.settings.domain},2026:whatsnew", title, home,
                 home + "feed.atom" if where else "feed.atom", language, newest)
    for issue in issues[:FEED_SIZE]:
        entry = feed.add_entry(order="append")
        entry.id(f"tag:{site.settings.domain},2026:whatsnew/{issue['number']}")
        entry.title(issue["title"])
        entry.link(href=f"{home}{issue['number']}.html" if where
                   else f"{issue['number']}.html", rel="alternate")
        entry.updated(_when(issue["date"]))
        entry.summary(_text(issue["text"]))
    return feed.atom_str(pretty=True)
