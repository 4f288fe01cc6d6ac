"""The site's own pages: the forum directory and the initiatives bank.

`directory-xx.html` (one per site language, `index.html` in the default
one) lists every forum with a public archive or open subscription, grouped
by path, with title, description, language, member count and join address.
The bank has a page per accepted initiative (`initiatives/N.html`), an
index by path, region, forum and month, each What's New issue as a page
linking to its items (`whatsnew/N.html`) and the issues' Atom feed.
`write_site_page(site, db, what)` writes 'directory' or 'bank';
`bank_signature` tells the stage when initiatives or issues changed, and
`sync_initiatives` puts accepted initiatives in the search index
(rowid = -id). Reads forums, members, initiatives and publications; writes
files, and archive_search through sync_initiatives.
"""

from __future__ import annotations

import json
import logging
import shutil

from listserv.archive import feeds
from listserv.archive.keep import mask
from listserv.archive.pages import labels, page, root, write_file

log = logging.getLogger(__name__)

PATHS = ("thematic", "socioprofessional", "geocultural")


def directory_forums(db) -> list[dict]:
    return list(db.query(
        "SELECT f.slug, f.title, f.description, f.language, f.path, f.archive, f.subscription,"
        " (SELECT count(*) FROM members m WHERE m.forum_id = f.id) AS members FROM forums f "
        "WHERE f.archive = 'public' OR f.subscription = 'open' ORDER BY f.path, f.title, f.slug"))


def write_directory(site, db) -> None:
    rows = directory_forums(db)
    domain = site.settings.domain
    for forum in rows:
        forum["join"] = f"{forum['slug']}-join@{domain}"
    groups = [{"path": path, "forums": [f for f in rows if f["path"] == path]}
              for path in PATHS]
    languages = site.settings.site.languages
    for language in languages:
        html = page(site, "archive-directory.html", language, up="", groups=groups,
                    languages=languages)
        write_file(root(site) / f"directory-{language}.html", html)
        if language == site.settings.site.default_language:
            write_file(root(site) / "index.html", html)


def accepted(db) -> list[dict]:
    rows = list(db.query(
        "SELECT i.id, i.title, i.text, i.link, i.region, i.path, i.forum, i.language, "
        "i.happens, i.accepted_at, i.publication, f.title AS forum_title, f.archive "
        "FROM initiatives i LEFT JOIN forums f ON f.slug = i.forum "
        "WHERE i.status = 'accepted' ORDER BY i.accepted_at DESC, i.id DESC"))
    for row in rows:
        row["text"] = mask(row["text"])
        row["link"] = row["link"] if row["link"].lower().startswith(("http://", "https://")) \
            else ""
        row["month"] = (row["accepted_at"] or "")[:7]
        row["issue"] = int(row["publication"].split(":")[1]) \
            if (row["publication"] or "").startswith("whatsnew:") else None
    return rows


def _groups(rows: list[dict], key) -> list[dict]:
    found: dict[str, list[dict]] = {}
    for row in rows:
        found.setdefault(key(row) or "", []).append(row)
    return [{"name": name, "entries": items}
            for name, items in sorted(found.items(), key=lambda kv: (kv[0] == "", kv[0]))]


def issues(db) -> list[dict]:
    found = []
    for row in db.query("SELECT number, title, language, period_end, created_at, payload "
                        "FROM publications WHERE kind = 'whatsnew' ORDER BY number DESC"):
        payload = json.loads(row["payload"])
        items = [item for section in payload.get("sections", []) for item in section["items"]]
        found.append({"number": row["number"], "title": row["title"],
                      "date": row["created_at"], "end": (row["period_end"] or "")[:10],
                      "sections": payload.get("sections", []), "count": len(items),
                      "text": "; ".join(item["title"] for item in items)})
    return found


def write_bank(site, db) -> None:
    language = site.settings.site.default_language
    folder = root(site) / "initiatives"
    rows = accepted(db)
    by = {"path": _groups(rows, lambda r: r["path"]),
          "region": _groups(rows, lambda r: r["region"]),
          "forum": _groups(rows, lambda r: r["forum_title"] or r["forum"]),
          "month": list(reversed(_groups(rows, lambda r: r["month"])))}
    write_file(folder / "index.html", page(site, "archive-bank.html", language, up="../",
                                           by=by, count=len(rows)))
    wanted = {"index.html"}
    for row in rows:
        name = f"{row['id']}.html"
        wanted.add(name)
        write_file(folder / name, page(site, "archive-initiative.html", language, up="../",
                                       initiative=row))
    for path in folder.glob("*.html"):
        if path.name not in wanted:
            path.unlink()
    news = root(site) / "whatsnew"
    found = issues(db)
    title = labels(site, language)["whatsnew"]
    for issue in found:
        write_file(news / f"{issue['number']}.html",
                   page(site, "archive-issue.html", language, up="../", issue=issue))
    write_file(news / "feed.atom", feeds.issues_feed(site, found, title, language))


def write_site_page(site, db, what: str) -> None:
    if what == "directory":
        write_directory(site, db)
    elif what == "bank":
        write_bank(site, db)


def bank_signature(db) -> tuple:
    """Changes whenever an initiative is accepted, edited or withdrawn, or an issue
    is published."""
    return (tuple(db.execute("SELECT count(*), max(updated_at), max(accepted_at) FROM "
                             "initiatives WHERE status = 'accepted'").fetchone()),
            db.execute("SELECT max(number) FROM publications WHERE kind = 'whatsnew'")
            .fetchone()[0])


def sync_initiatives(db) -> int:
    """The accepted initiatives, and only they, in the search index."""
    db.execute("DELETE FROM archive_search WHERE rowid < 0")
    db.execute("INSERT INTO archive_search (rowid, subject, body, forum) SELECT -id, title, "
               "text, '' FROM initiatives WHERE status = 'accepted'")
    return db.execute("SELECT changes()").fetchone()[0]


def remove_site_pages(site) -> None:
    for name in ("initiatives", "whatsnew"):
        shutil.rmtree(root(site) / name, ignore_errors=True)
