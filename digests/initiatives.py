"""Initiatives: allies' reports to whatsnew@, their review, and their updates.

`handle_report` is the pipeline's handler for mail to whatsnew@D: it reads
the report (reports.py), records it as INIT-n, and answers the reporter in
their language with the reference. A reply to that acknowledgement (or any
mail from the reporter naming [INIT-n] in its subject) updates the report.
Reports from known allies (members or facilitators of any forum, the
secretariat) are accepted at once unless `[whatsnew] review = "all"`;
others, and replies to a bulletin, wait for the secretariat, who is told.
`accept` and `reject` are the secretariat's decisions (the CLI). Writes
`initiatives` and, through mailing.py, the outbound queue. Will not publish:
whatsnew.py takes accepted initiatives from here.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime

from digests.mailing import render_for, send, site_address
from digests.reports import mentioned_ref, read_report
from digests.slots import iso
from listserv.errors import ListservError, NotFound
from listserv.mail.message import LOOP_HEADER, Parsed
from listserv.mail.replies import body_of
from listserv.site.forums import PATHS

log = logging.getLogger(__name__)

STATUSES = ("review", "accepted", "rejected")
SHOWN = ("id", "ref", "status", "title", "language", "path", "region", "forum", "link",
         "reporter", "created_at", "accepted_at", "publication", "reason")
_BULLETIN_ID = re.compile(r"<whatsnew\.\d+\.")


def ref_of(initiative_id: int) -> str:
    return f"INIT-{initiative_id}"


def parse_id(text: str) -> int:
    """42 from '42' or 'INIT-42'; ListservError otherwise."""
    match = re.fullmatch(r"\s*(?:init-)?(\d{1,9})\s*", str(text), re.IGNORECASE)
    if not match:
        raise ListservError(f"'{text}' is not an initiative number like 42 or INIT-42")
    return int(match.group(1))


def get(db, initiative_id: int) -> dict:
    rows = list(db.query("SELECT * FROM initiatives WHERE id = ?", [initiative_id]))
    if not rows:
        raise NotFound(f"initiative INIT-{initiative_id} does not exist "
                       f"(see 'listserv initiative list')")
    return dict(rows[0], ref=ref_of(initiative_id))


def list_initiatives(db, status: str | None = None, limit: int = 1000) -> list[dict]:
    if status is not None and status not in STATUSES + ("published",):
        raise ListservError(f"'{status}' is not a status; choose one of "
                            f"{', '.join(STATUSES + ('published',))}")
    sql, params = "SELECT * FROM initiatives", []
    if status == "published":
        sql += " WHERE publication IS NOT NULL"
    elif status == "accepted":
        sql += " WHERE status = 'accepted' AND publication IS NULL"
    elif status:
        sql += " WHERE status = ?"
        params.append(status)
    rows = db.query(sql + " ORDER BY id DESC LIMIT ?", params + [limit])
    return [{key: row.get(key) for key in SHOWN} | {"ref": ref_of(row["id"])} for row in rows]


def is_known(db, site, address: str) -> bool:
    """A known ally: a member or facilitator of any forum, or the secretariat."""
    if address in site.settings.site.secretariat:
        return True
    return db.execute("SELECT 1 FROM members WHERE address = ? UNION ALL "
                      "SELECT 1 FROM facilitators WHERE address = ? LIMIT 1",
                      [address, address]).fetchone() is not None


def language_of_reader(db, site, address: str) -> str | None:
    """The language an address chose as a member (its first forum), if any."""
    row = db.execute("SELECT language FROM members WHERE address = ? ORDER BY id LIMIT 1",
                     [address]).fetchone()
    if row and row[0] in site.settings.site.languages:
        return row[0]
    return None


def resolve_forum(db, written: str) -> dict | None:
    """The forum a report names by slug or title, or None."""
    text = " ".join(written.split()).lower()
    if not text:
        return None
    rows = list(db.query("SELECT slug, path FROM forums WHERE slug = ? OR lower(title) = ?",
                         [text, text]))
    return rows[0] if rows else None


def _fields(db, site, report: dict, reporter_language: str | None) -> dict:
    settings = site.settings
    forum = resolve_forum(db, report["forum"])
    path = forum["path"] if forum else (report["path"] if report["path"] in PATHS else "")
    region = report["region"]
    if report["forum"] and not forum and not region:
        region = report["forum"]  # a forum we do not have: keep what was said
    return {"title": report["title"] or "(untitled)", "text": report["text"],
            "link": report["link"], "region": region, "path": path,
            "forum": forum["slug"] if forum else "", "happens": report["when"],
            "language": report["language"] or reporter_language
            or settings.site.default_language}


def handle_report(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """The handler for mail to whatsnew@D: a new report, or an update of one."""
    domain = site.settings.domain
    if parsed is None or not parsed.answerable:
        log.info("message %s to whatsnew: unreadable, automatic or without a clear sender; "
                 "not recorded", row["id"])
        return
    own = site_address(site, "whatsnew")
    if parsed.sender[1].endswith("@" + domain) or any(own in loop for loop in parsed.loops):
        log.info("message %s to whatsnew comes from this site; ignored", row["id"])
        return
    name, reporter = parsed.sender
    report = read_report(parsed.subject, body_of(parsed.message), site.settings.site.languages)
    if not report["text"] and not report["title"]:
        log.info("message %s to whatsnew from %s is empty; not recorded", row["id"], reporter)
        return
    threads = f"{parsed.header('In-Reply-To')} {parsed.header('References')}"
    target = _updated(db, reporter, threads, parsed.subject)
    reader_language = language_of_reader(db, site, reporter)
    fields = _fields(db, site, report, reader_language)
    if target is not None:
        fields["title"] = report["title_line"]  # a reply's subject is ours, not a new title
        initiative = update_report(db, site, target, fields, row["id"], now)
        updated = True
    else:
        from_bulletin = bool(_BULLETIN_ID.search(threads))
        initiative = record_report(db, site, fields, reporter, name, row["id"], now,
                                   force_review=from_bulletin)
        updated = False
    language = reader_language or initiative["language"]
    subject, text = render_for(site, "initiative-ack.txt", language, initiative=initiative,
                               updated=updated)
    ack_id = send(db, site, to=reporter, subject=subject, text=text, now=now,
                  ref=f"initiative-ack:{row['id']}", sender=own,
                  in_reply_to=parsed.message_id, headers={LOOP_HEADER: own})
    db.execute("UPDATE initiatives SET ack_id = ? WHERE id = ?", [ack_id, initiative["id"]])
    if initiative["status"] == "review":
        _tell_secretariat(db, site, initiative, updated, now)


def _updated(db, reporter: str, threads: str, subject: str) -> dict | None:
    """The reporter's initiative this mail replies to, or None."""
    for ack_id in re.findall(r"<([^<>\s]{1,250})>", threads):
        rows = list(db.query("SELECT * FROM initiatives WHERE ack_id = ? AND reporter = ?",
                             [ack_id, reporter]))
        if rows:
            return rows[0]
    number = mentioned_ref(subject)
    if number is not None:
        rows = list(db.query("SELECT * FROM initiatives WHERE id = ? AND reporter = ?",
                             [number, reporter]))
        if rows:
            return rows[0]
    return None


def initial_status(db, site, reporter: str) -> str:
    if site.settings.whatsnew.review == "all" or not is_known(db, site, reporter):
        return "review"
    return "accepted"


def record_report(db, site, fields: dict, reporter: str, name: str, message_row_id: int,
                  now: datetime, force_review: bool = False) -> dict:
    status = "review" if force_review else initial_status(db, site, reporter)
    stamp = iso(now)
    initiative_id = db["initiatives"].insert({
        **fields, "reporter": reporter, "reporter_name": name[:120], "status": status,
        "message_id": message_row_id, "created_at": stamp, "updated_at": stamp,
        "accepted_at": stamp if status == "accepted" else None,
        "decided_by": "policy" if status == "accepted" else None,
        "decided_at": stamp if status == "accepted" else None}).last_pk
    log.info("initiative INIT-%s from %s recorded (%s)", initiative_id, reporter, status)
    return get(db, initiative_id)


def update_report(db, site, initiative: dict, fields: dict, message_row_id: int,
                  now: datetime) -> dict:
    """The reporter's correction merges, never wipes: each field it gives
    replaces that field, new text replaces the text, and a correction of
    field lines only keeps the text (and its language). An accepted report
    not yet published stays accepted only if its reporter needs no review."""
    changes = {key: value for key, value in fields.items() if value}
    if not fields["text"]:  # a few corrected lines: the language stays what it was
        changes.pop("language", None)
    changes.update({"updated_at": iso(now), "message_id": message_row_id})
    if initiative["publication"] is None and initiative["status"] != "rejected":
        status = initial_status(db, site, initiative["reporter"])
        changes["status"] = status
        changes["accepted_at"] = iso(now) if status == "accepted" else None
    db["initiatives"].update(initiative["id"], changes)
    log.info("initiative INIT-%s updated by %s", initiative["id"], initiative["reporter"])
    return get(db, initiative["id"])


def _tell_secretariat(db, site, initiative: dict, updated: bool, now: datetime) -> None:
    secretariat = list(site.settings.site.secretariat)
    if not secretariat:
        return
    waiting = db.execute("SELECT count(*) FROM initiatives WHERE status = 'review'").fetchone()[0]
    subject, text = render_for(site, "initiative-review.txt",
                               site.settings.site.default_language, initiative=initiative,
                               updated=updated, waiting=waiting)
    send(db, site, to=secretariat, subject=subject, text=text, now=now,
         ref=f"initiative-review:{initiative['id']}:{initiative['updated_at']}",
         sender=site_address(site, "whatsnew"))


def accept(db, site, initiative_id: int, by: str, now: datetime) -> dict:
    """Accept a report for the next What's New; accepting twice changes nothing."""
    with db.atomic():
        initiative = get(db, initiative_id)
        if initiative["status"] == "accepted":
            return {**initiative, "changed": False}
        db["initiatives"].update(initiative_id, {
            "status": "accepted", "accepted_at": iso(now), "decided_by": by,
            "decided_at": iso(now), "reason": ""})
        log.info("initiative INIT-%s accepted by %s", initiative_id, by)
    return {**get(db, initiative_id), "changed": True}


def reject(db, site, initiative_id: int, by: str, reason: str, now: datetime) -> dict:
    """Reject a report and tell the reporter why; a published one cannot be."""
    with db.atomic():
        initiative = get(db, initiative_id)
        if initiative["publication"]:
            raise ListservError(f"INIT-{initiative_id} was published in "
                                f"{initiative['publication']}; it cannot be rejected now")
        if initiative["status"] == "rejected":
            return {**initiative, "changed": False}
        db["initiatives"].update(initiative_id, {
            "status": "rejected", "accepted_at": None, "decided_by": by,
            "decided_at": iso(now), "reason": reason[:500]})
        initiative = get(db, initiative_id)
        language = language_of_reader(db, site, initiative["reporter"]) or initiative["language"]
        subject, text = render_for(site, "initiative-rejected.txt", language,
                                   initiative=initiative, reason=reason)
        send(db, site, to=initiative["reporter"], subject=subject, text=text, now=now,
             ref=f"initiative-rejected:{initiative_id}", sender=site_address(site, "whatsnew"))
        log.info("initiative INIT-%s rejected by %s: %s", initiative_id, by, reason)
    return {**initiative, "changed": True}
