"""Translation on a relay: segments, the translation memory, sheets, deadlines.

A publication is split into segments (its title, each section's heading and
subheading, each item's title and text), numbered in reading order, for
each language the relay serves that has recipients. A segment already in
the target language needs nothing; the hub's own headings in that language
and the translation memory (exact match on normalised text, per language
pair) fill what was translated before; the rest go to the language's
translators as one numbered plain-text sheet by email, with a reply address
of its own (`relay+CODE@domain`). The sheet numbers what it asks for 1..n
without gaps (`sheet_number`; a segment's own `number` counts every text of
the publication, known ones too), and replies are read by those numbers.
Their reply fills the sheet and the memory (`sheets.py` reads it). Each language is ready on its own (a
`relay_dispatches` row, which dispatch takes at once): the original at
once, a language with nothing open at once, the others when their sheet is
complete or at the deadline, when what is still open goes out in the
original language, marked. The publication is 'ready' when every language
is. Every step is one transaction and works from the stored
status, so a crash repeats nothing and loses nothing.
Writes `translation_segments`, `translation_sheets`, `translation_memory`,
`tokens`, `relay_dispatches` and `relay_publications.status`; queues sheets
through notify.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from listserv.delivery.notify import send_template
from listserv.mail.tokens import issue_token, peek_token
from relays import node
from relays.language import detect

log = logging.getLogger(__name__)

DONE = ("same", "memory", "translated")  # a segment with its text in the target language
SHEET_LIFETIME = timedelta(days=30)  # late replies still feed the memory


@dataclass(frozen=True)
class Segment:
    number: int
    path: str  # where it sits in the payload: "title", "sections.0.items.2.text"
    source_language: str
    source: str


def normalise(text: str) -> str:
    """The memory's key: NFC, whitespace runs made one space, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def sections_of(payload: dict) -> list[dict]:
    """The payload's sections; a bare `items` list is one section without heading."""
    sections = payload.get("sections")
    if isinstance(sections, list):
        return [s for s in sections if isinstance(s, dict)]
    items = payload.get("items")
    return [{"heading": "", "items": items}] if isinstance(items, list) else []


def item_text(item: dict):
    """The text of an item to translate: its whole text when the hub sent it
    (`full`), else the text as printed in the bulletin."""
    full = item.get("full")
    return full if isinstance(full, str) and full.strip() else item.get("text")


def segments_of(payload: dict, language: str) -> list[Segment]:
    """Every translatable text of a publication, numbered from 1 in reading order."""
    found: list[tuple[str, str, object]] = [("title", language, payload.get("title"))]
    for i, section in enumerate(sections_of(payload)):
        found.append((f"sections.{i}.heading", language, section.get("heading")))
        found.append((f"sections.{i}.subheading", language, section.get("subheading")))
        for j, item in enumerate(section.get("items") or []):
            if not isinstance(item, dict):
                continue
            item_language = str(item.get("language") or language)
            found.append((f"sections.{i}.items.{j}.title", item_language, item.get("title")))
            found.append((f"sections.{i}.items.{j}.text", item_language, item_text(item)))
    segments = []
    for path, source_language, text in found:
        if isinstance(text, str) and text.strip():
            segments.append(Segment(len(segments) + 1, path, source_language, text.strip()))
    return segments


def detected(segment: Segment, site, targets: list[str]) -> Segment:
    """An item's text written in one of the relay's languages although its item
    says otherwise (a French reply in an English forum) is taken as written in
    that language, so it is not sent to be translated into itself."""
    if not segment.path.endswith(".text") or segment.source_language in targets:
        return segment
    found = detect(segment.source, set(site.settings.site.languages) | set(targets)
                   | {segment.source_language})
    if found and found != segment.source_language and found in targets:
        log.info("segment %s reads as '%s', not '%s'", segment.path, found,
                 segment.source_language)
        return Segment(segment.number, segment.path, found, segment.source)
    return segment


def hub_heading(payload: dict, path: str, language: str) -> str | None:
    """The hub's own heading for a section in `language` (payload "headings")."""
    if not path.endswith(".heading"):
        return None
    headings = payload.get("headings")
    if not isinstance(headings, dict) or not isinstance(headings.get(language), dict):
        return None
    index = int(path.split(".")[1])
    sections = sections_of(payload)
    key = sections[index].get("path") if index < len(sections) else None
    value = headings[language].get(key) if key else None
    return value if isinstance(value, str) and value.strip() else None


def remember(db, source_language: str, language: str, source: str, text: str,
             now: datetime) -> None:
    db.execute("INSERT OR REPLACE INTO translation_memory (source_language, language, source, "
               "text, updated_at) VALUES (?, ?, ?, ?, ?)",
               [source_language, language, normalise(source), text, now.isoformat()])


def recall(db, source_language: str, language: str, source: str) -> str | None:
    row = db.execute("SELECT text FROM translation_memory WHERE source_language = ? AND "
                     "language = ? AND source = ?",
                     [source_language, language, normalise(source)]).fetchone()
    return row[0] if row else None


def target_languages(db, site, publication: dict) -> list[str]:
    """The languages the relay serves that have recipients, other than the original."""
    served = site.settings.relay.languages or site.settings.site.languages
    wanted = {row[0] for row in db.execute("SELECT DISTINCT language FROM relay_recipients")}
    return [lang for lang in served if lang in wanted and lang != publication["language"]]


def prepare(db, site, publication: dict, now: datetime, draft=None) -> str:
    """Segment a received publication, fill what is known, send the sheets;
    returns its new status ('translating' or 'ready'). `draft(texts, source,
    target)` is the optional machine translation that pre-fills drafts."""
    payload = json.loads(publication["payload"])
    segments = segments_of(payload, publication["language"])
    targets = target_languages(db, site, publication)
    if targets:
        segments = [detected(segment, site, targets) for segment in segments]
    waiting = False
    language_ready(db, publication, publication["language"], now)
    for language in targets:
        rows = []
        for segment in segments:
            text, status, by = None, "open", ""
            if segment.source_language == language:
                text, status = segment.source, "same"
            else:
                text = hub_heading(payload, segment.path, language)
                status, by = ("memory", "hub") if text else ("open", "")
                if text is None:
                    text = recall(db, segment.source_language, language, segment.source)
                    status, by = ("memory", "memory") if text is not None else ("open", "")
            rows.append({"publication_id": publication["id"], "language": language,
                         "number": segment.number, "path": segment.path,
                         "source_language": segment.source_language,
                         "source": segment.source, "text": text, "status": status,
                         "filled_by": by, "filled_at": now.isoformat() if text else None,
                         "sheet_number": None})
        open_rows = [r for r in rows if r["status"] == "open"]
        for position, row in enumerate(open_rows, 1):  # what the translator sees: 1..n
            row["sheet_number"] = position
        if open_rows and draft is not None:
            _add_drafts(open_rows, draft)
        db["translation_segments"].insert_all(rows, ignore=True)
        if open_rows:
            waiting = True
            open_sheet(db, site, publication, language, len(open_rows), now)
        else:
            language_ready(db, publication, language, now)
    if waiting:
        db.execute("UPDATE relay_publications SET status = 'translating' WHERE id = ?",
                   [publication["id"]])
        return "translating"
    mark_ready(db, site, publication["id"], now)
    return "ready"


def _add_drafts(rows: list[dict], draft) -> None:
    """Machine drafts for open segments, per source language; a failing backend
    only means no drafts."""
    by_source: dict[str, list[dict]] = {}
    for row in rows:
        by_source.setdefault(row["source_language"], []).append(row)
    for source_language, group in by_source.items():
        try:
            drafts = draft([r["source"] for r in group], source_language, group[0]["language"])
        except Exception:
            log.exception("machine translation failed; the sheet goes out without drafts")
            return
        for row, text in zip(group, drafts or []):
            if isinstance(text, str) and text.strip():
                row["draft"] = text.strip()


def open_sheet(db, site, publication: dict, language: str, count: int, now: datetime) -> int:
    """The sheet of one language: its row, its reply code and the mail to the translators."""
    sheet_id = db["translation_sheets"].insert(
        {"publication_id": publication["id"], "language": language, "status": "open",
         "created_at": now.isoformat()}, ignore=True).last_pk
    sheet = db["translation_sheets"].get(sheet_id)
    translators = site.settings.relay.translator_addresses(language)
    if not translators:
        db["translation_sheets"].update(sheet_id, {"status": "unassigned"})
        log.warning("publication %s: no translator for '%s' ([relay] translators); "
                    "%s wait for 'listserv translation submit %s' or the deadline",
                    publication["key"], language, _segments(count), sheet_id)
        return sheet_id
    deadline = datetime.fromisoformat(publication["deadline_at"])
    lifetime = int((deadline - now + SHEET_LIFETIME).total_seconds())
    token = issue_token(db, "translation-sheet", forum_id=None, address="",
                        data={"sheet": sheet_id}, now=now, lifetime_seconds=lifetime)
    db["translation_sheets"].update(sheet_id, {
        "token_id": peek_token(db, token, "translation-sheet")["id"]})
    reply = f"relay+{token}@{site.settings.domain}"
    context = sheet_context(db, sheet, publication)
    for address in translators:
        send_template(db, site, "translation-sheet.txt", to=address, language=language,
                      ref=f"translation-sheet:{sheet_id}", now=now, reply_to=reply, **context)
    log.info("publication %s: sheet %s (%s, %s) sent to %s", publication["key"],
             sheet_id, language, _segments(count), ", ".join(translators))
    return sheet_id


def _segments(count: int) -> str:
    return "1 segment" if count == 1 else f"{count} segments"


def by_sheet_number(rows) -> dict[int, dict]:
    """A language's segments keyed by the number its sheet shows them under;
    a sheet written before sheet numbers existed shows the segments' own."""
    rows = list(rows)
    if any(row["sheet_number"] is not None for row in rows):
        return {row["sheet_number"]: row for row in rows if row["sheet_number"] is not None}
    return {row["number"]: row for row in rows}


def sheet_context(db, sheet: dict, publication: dict) -> dict:
    """What the sheet template shows: the open segments, under their sheet
    numbers (`number` here), and the deadline."""
    rows = db.query("SELECT number, sheet_number, source_language, source, draft, status "
                    "FROM translation_segments WHERE publication_id = ? AND language = ?",
                    [sheet["publication_id"], sheet["language"]])
    segments = [{"number": number, "source_language": row["source_language"],
                 "source": row["source"], "draft": row["draft"]}
                for number, row in sorted(by_sheet_number(rows).items())
                if row["status"] == "open"]
    languages = sorted({s["source_language"] for s in segments})
    return {"sheet": {"id": sheet["id"], "language": sheet["language"],
                      "deadline": publication["deadline_at"][:16].replace("T", " ") + " UTC"},
            "publication": {"key": publication["key"], "title": publication["title"],
                            "language": publication["language"]},
            "segments": segments, "source_languages": languages,
            "numbers_by_language": {lang: [s["number"] for s in segments
                                           if s["source_language"] == lang]
                                    for lang in languages}}


def progress(db, publication_id: int) -> dict:
    """Per language: segments, how many have their translation, how many stay original."""
    result = {}
    for language, total, done, original in db.execute(
            "SELECT language, count(*), sum(status IN ('same', 'memory', 'translated')), "
            "sum(status IN ('open', 'original')) FROM translation_segments "
            "WHERE publication_id = ? GROUP BY language", [publication_id]):
        result[language] = {"segments": total, "translated": done, "original": original}
    return result


def language_ready(db, publication: dict, language: str, now: datetime) -> None:
    """One language of a publication may go out now (once; dispatch takes it)."""
    db.execute("INSERT OR IGNORE INTO relay_dispatches (publication_id, language, status, "
               "ready_at) VALUES (?, ?, 'ready', ?)", [publication["id"], language,
                                                      now.isoformat()])


def mark_ready(db, site, publication_id: int, now: datetime) -> None:
    """Translation is over for this publication: tell the hub, let dispatch take it."""
    changed = db.execute("UPDATE relay_publications SET status = 'ready', ready_at = ? "
                         "WHERE id = ? AND status IN ('received', 'translating')",
                         [now.isoformat(), publication_id]).rowcount
    if changed:
        publication = db["relay_publications"].get(publication_id)
        node.send_ack(db, site, publication["key"], "translated",
                      {"languages": progress(db, publication_id)}, now)


def complete_if_done(db, site, sheet_id: int, now: datetime) -> bool:
    """Close a sheet with nothing open; the publication is ready when all are closed."""
    sheet = db["translation_sheets"].get(sheet_id)
    left = db.execute("SELECT count(*) FROM translation_segments WHERE publication_id = ? "
                      "AND language = ? AND status = 'open'",
                      [sheet["publication_id"], sheet["language"]]).fetchone()[0]
    if left or sheet["status"] not in ("open", "unassigned"):
        return sheet["status"] == "complete"
    db["translation_sheets"].update(sheet_id, {"status": "complete",
                                               "completed_at": now.isoformat()})
    language_ready(db, {"id": sheet["publication_id"]}, sheet["language"], now)
    still = db.execute("SELECT 1 FROM translation_sheets WHERE publication_id = ? AND "
                       "status IN ('open', 'unassigned') LIMIT 1",
                       [sheet["publication_id"]]).fetchone()
    if not still:
        mark_ready(db, site, sheet["publication_id"], now)
    return True


def expire_due(db, site, now: datetime, limit: int = 20) -> int:
    """Publications past their deadline go out with what is translated."""
    rows = list(db.query("SELECT id, key FROM relay_publications WHERE status = 'translating' "
                         "AND deadline_at <= ? ORDER BY deadline_at LIMIT ?",
                         [now.isoformat(), limit]))
    for row in rows:
        db.execute("UPDATE translation_segments SET status = 'original' "
                   "WHERE publication_id = ? AND status = 'open'", [row["id"]])
        for (language,) in db.execute("SELECT DISTINCT language FROM translation_segments "
                                      "WHERE publication_id = ?", [row["id"]]).fetchall():
            language_ready(db, row, language, now)
        db.execute("UPDATE translation_sheets SET status = 'expired' WHERE publication_id = ? "
                   "AND status IN ('open', 'unassigned')", [row["id"]])
        mark_ready(db, site, row["id"], now)
        log.info("publication %s reached its translation deadline; what is missing goes "
                 "out in the original language", row["key"])
    return len(rows)


def next_deadline(db) -> datetime | None:
    row = db.execute("SELECT min(deadline_at) FROM relay_publications "
                     "WHERE status = 'translating'").fetchone()
    return datetime.fromisoformat(row[0]) if row and row[0] else None


def prepare_received(db, site, now: datetime, limit: int = 5, draft=None) -> int:
    """Run `prepare` on publications just received; returns how many."""
    rows = list(db.query("SELECT * FROM relay_publications WHERE status = 'received' "
                         "ORDER BY id LIMIT ?", [limit]))
    for row in rows:
        node.guarded(db, row, "translation", prepare, db, site, row, now, draft)
    return len(rows)
