"""What's New: accepted initiatives assembled into a numbered bulletin.

`assemble` groups items by path (geocultural, socioprofessional, thematic,
then the rest) and, within a path, by region or forum, and trims each text
at a word boundary to `[whatsnew] item_length`; it is pure. Headings come
from the `whatsnew-labels.txt` template of each site language; items keep
the language they were written in. `render_issue` gives a language's
(subject, text, HTML): the HTML comes from `whatsnew-issue.html`, whose
markup is checked when the template is activated, with every value
autoescaped, and is sanitised with bleach again unless it is enormous
(bleach needs seconds a megabyte). `publish` stores the issue as a
publication, marks its initiatives as published and queues its copies to
the bulletin's readers (bulletin.py), all in the caller's transaction.
`publish_due` publishes the issue owed by the schedule: one per period,
also after the server was down at the scheduled time. Writes
`publications`, `initiatives.publication` and the outbound queue.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from digests import bulletin, publications
from digests.mailing import render_for, render_text, wrap
from digests.slots import iso, last_slot, next_slot
from listserv.archive.links import base as archive_base
from listserv.delivery.distribution import sanitise_html
from listserv.errors import ListservError

log = logging.getLogger(__name__)

KIND = "whatsnew"
PATH_ORDER = ("geocultural", "socioprofessional", "thematic", "other")
SANITISE_LIMIT = 400_000  # characters of HTML bleach is run over in well under a second
LABEL_KEYS = ("title",) + PATH_ORDER


def key_of(number: int) -> str:
    return f"whatsnew:{number}"


def trim(text: str, length: int) -> str:
    """`text` on one line, cut at the last word boundary before `length`, with '…'."""
    flat = " ".join(text.split())
    if len(flat) <= length:
        return flat
    cut = flat[:length - 1]
    space = cut.rfind(" ")
    if flat[length - 1] != " " and space > length // 2:  # not in the middle of a word
        cut = cut[:space]
    return cut.rstrip(" ,;:.-") + "…"


def candidates(db, until: str, limit: int | None = None) -> list[dict]:
    """Accepted initiatives not yet published, accepted at or before `until`."""
    sql = ("SELECT id, title, text, link, region, path, forum, language, happens, accepted_at "
           "FROM initiatives WHERE status = 'accepted' AND publication IS NULL "
           "AND accepted_at <= ? ORDER BY id")
    params: list = [until]
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    return list(db.query(sql, params))


def assemble(rows: list[dict], item_length: int, forum_titles: dict[str, str],
             headings: dict[str, str]) -> list[dict]:
    """Sections of the payload (see publications.py), in path order, then by
    region (geocultural) or forum (the others), the unplaced last."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        path = row["path"] if row["path"] in PATH_ORDER else "other"
        forum_title = forum_titles.get(row["forum"], "")
        if path == "geocultural":
            sub = row["region"] or forum_title
        else:
            sub = forum_title or row["region"]
        groups.setdefault((path, sub), []).append({
            "ref": f"INIT-{row['id']}", "title": row["title"],
            "text": trim(row["text"], item_length), "link": row["link"],
            "language": row["language"], "region": row["region"], "path": path,
            "forum": row["forum"], "when": row["happens"]})
    order = sorted(groups, key=lambda key: (PATH_ORDER.index(key[0]), key[1] == "",
                                            key[1].casefold()))
    return [{"heading": headings.get(path, path), "subheading": sub, "path": path,
             "items": groups[(path, sub)]} for path, sub in order]


def labels(site, language: str) -> dict[str, str]:
    """The headings of `whatsnew-labels.txt` ("key: text" lines) in `language`."""
    text = render_text(site, "whatsnew-labels.txt", language)
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in LABEL_KEYS and value.strip():
            found[key.strip()] = " ".join(value.split())[:120]
    return {key: found.get(key, key.title()) for key in LABEL_KEYS}


def issue_info(payload: dict) -> dict:
    end = payload["period"]["end"] or ""
    return {"number": payload["number"], "ref": f"WN-{payload['number']}", "key": payload["key"],
            "date": end[:10], "start": (payload["period"]["start"] or "")[:10], "end": end[:10]}


def render_issue(site, payload: dict, language: str, full: dict | None = None,
                 html: bool = True) -> tuple[str, str, str]:
    """(subject, text, html) of an issue in `language`; `full` maps refs to the
    whole text of their items (for `get WN-17`)."""
    heads = labels(site, language)
    sections = []
    for section in payload["sections"]:
        items = [dict(item, text=full.get(item["ref"], item["text"])) if full else item
                 for item in section["items"]]
        items = [dict(item, lines=wrap(item["text"])) for item in items]
        sections.append(dict(section, heading=heads.get(section["path"], section["heading"]),
                             items=items))
    context = {"issue": issue_info(payload), "sections": sections, "labels": heads,
               "reader_language": language, "full": bool(full),
               "count": sum(len(s["items"]) for s in sections)}
    subject, text = render_for(site, "whatsnew-issue.txt", language, **context)
    page = ""
    if html:
        page = render_text(site, "whatsnew-issue.html", language, **context)
        if len(page) <= SANITISE_LIMIT:
            page = sanitise_html(page)
    return subject, text, page


def build(db, site, rows: list[dict], number: int, start: str | None, end: str) -> dict:
    """The payload of issue `number` from `rows` (nothing stored)."""
    settings = site.settings
    language = settings.site.default_language
    titles = dict(db.execute("SELECT slug, title FROM forums").fetchall())
    headings = {lang: labels(site, lang) for lang in settings.site.languages}
    payload = {"key": key_of(number), "kind": KIND, "number": number, "volume": 1,
               "title": "", "language": language, "period": {"start": start, "end": end},
               "sections": assemble(rows, settings.whatsnew.item_length, titles,
                                    headings[language]),
               "text": "", "html": "", "headings": headings}
    if settings.web.url:  # each item's page in the initiatives bank (listserv/archive/bank.py)
        for section in payload["sections"]:
            for item in section["items"]:
                item["page"] = f"{archive_base(settings.web.url)}/initiatives/" \
                               f"{item['ref'].split('-')[1]}.html"
    subject, text, html = render_issue(site, payload, language)
    payload.update(title=subject, text=text, html=html)
    return payload


def store_issue(db, site, rows: list[dict], start: str | None, end: str,
                now: datetime) -> dict:
    """Build issue N of `rows`, store it as a publication and mark them
    published; returns its payload (nothing is queued yet)."""
    number = publications.next_number(db, KIND)
    payload = build(db, site, rows, number, start, end)
    publications.store_publication(db, key=payload["key"], kind=KIND, number=number,
                                   title=payload["title"], language=payload["language"],
                                   payload=payload, now=now, period_start=start,
                                   period_end=end)
    db.execute("UPDATE initiatives SET publication = ? WHERE id IN "
               "(SELECT value FROM json_each(?))", [payload["key"], _ids(rows)])
    return payload


def publish(db, site, rows: list[dict], start: str | None, end: str, now: datetime) -> str:
    """Store issue N of `rows`, mark them published and queue its copies."""
    payload = store_issue(db, site, rows, start, end, now)
    rendered = {payload["language"]: (payload["title"], payload["text"], payload["html"])}
    queued = bulletin.send_issue(db, site, payload, now, render_issue, rendered)
    publications.mark_sending(db, payload["key"])
    log.info("What's New %s published: %d items, %d copies queued", payload["key"], len(rows),
             queued)
    return payload["key"]


def _ids(rows: list[dict]) -> str:
    return json.dumps([row["id"] for row in rows])


def owed(db, site, now: datetime) -> tuple[str | None, str] | None:
    """(period start, period end) of the issue the schedule owes at `now`, or None."""
    settings = site.settings
    slot = last_slot(settings.whatsnew.schedule, settings.site.timezone, now)
    if slot is None:
        return None
    end = iso(slot)
    last = publications.latest(db, KIND)
    if last and (last["period_end"] or "") >= end:
        return None
    return (last["period_end"] if last else None), end


def publish_due(db, site, now: datetime) -> list[str]:
    """Publish the issue the schedule owes at `now`, if it has anything in it."""
    period = owed(db, site, now)
    if period is None:
        return []
    rows = candidates(db, period[1])
    if not rows:
        return []
    start = period[0] or min(row["accepted_at"] for row in rows)
    return [publish(db, site, rows, start, period[1], now)]


def publish_now(db, site, now: datetime) -> str:
    """Publish every accepted initiative not yet published, now."""
    rows = candidates(db, iso(now))
    if not rows:
        raise ListservError("no accepted initiative is waiting for What's New "
                            "(see 'listserv initiative list --status review')")
    last = publications.latest(db, KIND)
    start = last["period_end"] if last else min(row["accepted_at"] for row in rows)
    return publish(db, site, rows, start, iso(now), now)


def preview(db, site, language: str, now: datetime) -> tuple[str, str, str, int]:
    """(subject, text, html, items) of the next issue as it stands now; nothing stored."""
    if language not in site.settings.site.languages:
        raise ListservError(f"'{language}' is not one of the site's languages "
                            f"({', '.join(site.settings.site.languages)})")
    rows = candidates(db, iso(now))
    last = publications.latest(db, KIND)
    payload = build(db, site, rows, publications.next_number(db, KIND),
                    last["period_end"] if last else None, iso(now))
    subject, text, html = render_issue(site, payload, language)
    return subject, text, html, len(rows)


def next_issue(site, now: datetime) -> datetime | None:
    settings = site.settings
    return next_slot(settings.whatsnew.schedule, settings.site.timezone, now)
