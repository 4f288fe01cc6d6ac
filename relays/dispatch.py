"""Dispatch at a relay: each ready language of a publication to its recipients.

A language is ready on its own (`relay_dispatches`, written by
translation.py): the original at once, a translated language when its
sheet is complete or at the deadline. For each ready language, in one
transaction: references for its items and links, the lowband copies of the
recipients who read it (rendered once per byte budget, then addressed to
each reader), its postal batch with its recipients fixed (`postal_labels`;
the files are built afterwards by `postal.py`) and its counts. When the
translation is over and every language went out, the publication is
'dispatched' and the hub gets the counts per profile. A recipient whose
language the relay does not translate into gets the original. Refs are
`relay-lowband:KEY:LANG:BUDGET:N` per recipient, so nobody gets a part
twice. Writes `relay_links`, `bodies`, `deliveries`, `postal_batches`,
`postal_labels`, `relay_dispatches` and the publication's status.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from listserv.delivery.queue import enqueue, store_body
from relays import node
from relays.lowband import build_part, lowband_plan
from relays.postal import batch_id, folder_of
from relays.render import assign_refs, localise, segments_by_path, with_places
from relays.translation import progress

log = logging.getLogger(__name__)

EFFECTIVE = ("CASE WHEN language IN (SELECT value FROM json_each(:targets)) THEN language "
             "ELSE :original END")


def dispatch_ready(db, site, now: datetime, limit: int = 2) -> int:
    """Dispatch up to `limit` ready languages of publications, each in its own
    transaction; returns how many."""
    rows = list(db.query(
        "SELECT d.language AS dispatch_language, p.* FROM relay_dispatches d JOIN relay_publications p ON "
        "p.id = d.publication_id WHERE d.status = 'ready' AND p.status IN ('translating', "
        "'ready') ORDER BY d.ready_at, p.id, d.language LIMIT ?", [limit]))
    for row in rows:
        language = row.pop("dispatch_language")
        publication = row
        node.guarded(db, publication, "dispatch", dispatch_language, db, site, publication,
                     language, now)
    return len(rows)


def dispatch(db, site, publication: dict, now: datetime) -> dict:
    """Dispatch every language of `publication` that is ready and not yet sent;
    returns the publication's counts so far."""
    for (language,) in db.execute("SELECT language FROM relay_dispatches WHERE "
                                  "publication_id = ? AND status = 'ready' ORDER BY language",
                                  [publication["id"]]).fetchall():
        dispatch_language(db, site, publication, language, now)
    return json.loads(db["relay_publications"].get(publication["id"])["counts"] or "{}")


def empty_counts() -> dict:
    return {"lowband": {"recipients": 0, "messages": 0, "bytes": 0},
            "postal": {"recipients": 0, "batches": 0}}


def add_counts(total: dict, more: dict) -> dict:
    for profile, values in more.items():
        for name, value in values.items():
            into = total.setdefault(profile, {})
            into[name] = max(into.get(name, 0), value) if name == "bytes" else \
                into.get(name, 0) + value
    return total


def dispatch_language(db, site, publication: dict, language: str, now: datetime) -> dict:
    """Queue one language's lowband copies and open its postal batch; when it is
    the last language of a publication whose translation is over, the
    publication is 'dispatched' and the hub is told. Returns this language's counts."""
    claimed = db.execute("UPDATE relay_dispatches SET status = 'dispatching' WHERE "
                         "publication_id = ? AND language = ? AND status = 'ready'",
                         [publication["id"], language]).rowcount
    if not claimed:
        return empty_counts()
    payload = json.loads(publication["payload"])
    targets = [row[0] for row in db.execute(
        "SELECT DISTINCT language FROM translation_segments WHERE publication_id = ?",
        [publication["id"]])]
    extra = [(path.rsplit(".", 1)[0], text) for path, text in db.execute(
        "SELECT path, text FROM translation_segments WHERE publication_id = ? AND "
        "language = ? AND text IS NOT NULL AND path LIKE 'sections.%.items.%'",
        [publication["id"], language])]
    refs = assign_refs(db, publication["id"], payload, extra)
    segments = segments_by_path(db, publication["id"], language) if language in targets else {}
    view = with_places(db, localise(payload, publication, language, segments, refs))
    groups = {"targets": json.dumps(targets), "original": publication["language"],
              "language": language}
    counts = empty_counts()
    for budget, number in db.execute(
            f"SELECT budget, count(*) FROM relay_recipients WHERE profile = 'lowband' AND "
            f"{EFFECTIVE} = :language GROUP BY budget ORDER BY budget", groups).fetchall():
        queued, largest = queue_lowband(db, site, publication, view, language, budget, groups,
                                        now)
        counts["lowband"]["messages"] += queued
        counts["lowband"]["bytes"] = max(counts["lowband"]["bytes"], largest)
        counts["lowband"]["recipients"] += number
    number = db.execute(f"SELECT count(*) FROM relay_recipients WHERE profile = 'postal' AND "
                        f"{EFFECTIVE} = :language", groups).fetchone()[0]
    if number:
        _open_batch(db, site, publication, language, groups, number, now)
        counts["postal"]["recipients"] += number
        counts["postal"]["batches"] += 1
    db.execute("UPDATE relay_dispatches SET status = 'dispatched', dispatched_at = ?, "
               "counts = ? WHERE publication_id = ? AND language = ?",
               [now.isoformat(), json.dumps(counts), publication["id"], language])
    stored = db.execute("SELECT counts FROM relay_publications WHERE id = ?",
                        [publication["id"]]).fetchone()[0]
    total = add_counts(json.loads(stored or "{}") or empty_counts(), counts)
    db.execute("UPDATE relay_publications SET counts = ? WHERE id = ?",
               [json.dumps(total), publication["id"]])
    log.info("publication %s (%s) dispatched: %d lowband recipients (%d messages), %d postal "
             "recipients", publication["key"], language, counts["lowband"]["recipients"],
             counts["lowband"]["messages"], counts["postal"]["recipients"])
    finish_if_done(db, site, publication["id"], now)
    return counts


def finish_if_done(db, site, publication_id: int, now: datetime) -> bool:
    """A publication whose translation is over and whose every language went out
    is 'dispatched', and the hub gets the counts (once)."""
    publication = db["relay_publications"].get(publication_id)
    if publication["status"] != "ready" or db.execute(
            "SELECT 1 FROM relay_dispatches WHERE publication_id = ? AND status != "
            "'dispatched' LIMIT 1", [publication_id]).fetchone():
        return False
    counts = json.loads(publication["counts"] or "{}") or empty_counts()
    db.execute("UPDATE relay_publications SET status = 'dispatched', dispatched_at = ? "
               "WHERE id = ?", [now.isoformat(), publication_id])
    languages = {lang: {"dispatched_at": at} for lang, at in db.execute(
        "SELECT language, dispatched_at FROM relay_dispatches WHERE publication_id = ?",
        [publication_id])}
    node.send_ack(db, site, publication["key"], "dispatched",
                  {"profiles": counts, "languages": progress(db, publication_id),
                   "dispatched": languages}, now)
    log.info("publication %s: every language dispatched", publication["key"])
    return True


def queue_lowband(db, site, publication: dict, view: dict, language: str, budget: int,
                  groups: dict, now: datetime) -> tuple[int, int]:
    """The copies of one language and budget, each addressed to its reader (the
    text is planned once for the group); returns (messages queued, largest size)."""
    readers = [row[0] for row in db.execute(
        f"SELECT address FROM relay_recipients WHERE profile = 'lowband' AND budget = :budget "
        f"AND {EFFECTIVE} = :language ORDER BY lower(substr(address, instr(address, '@') + 1)), "
        f"address", {**groups, "budget": budget})]
    if not readers:
        return 0, 0
    plan = lowband_plan(site, view, budget, now, max(readers, key=len))
    sender = f"listserv-bounces@{site.settings.domain}"
    queued, largest = 0, 0
    for part, (subject, text) in enumerate(plan, 1):
        ref = f"relay-lowband:{publication['key']}:{language}:{budget}:{part}"
        done = {row[0] for row in db.execute("SELECT recipient FROM deliveries WHERE ref = ?",
                                             [ref])}
        for address in readers:
            if address in done:
                continue
            data = build_part(site, to=address, subject=subject, text=text, now=now)
            queued += enqueue(db, ref, store_body(db, ref, data, now), [address], sender, now)
            largest = max(largest, len(data))
    return queued, largest


def _open_batch(db, site, publication: dict, language: str, groups: dict, number: int,
                now: datetime) -> None:
    batch = batch_id(publication["key"], language)
    db["postal_batches"].insert({
        "id": batch, "publication_id": publication["id"], "language": language,
        "folder": str(folder_of(site, batch)), "recipients": number, "status": "building",
        "created_at": now.isoformat()}, ignore=True)
    db.execute(
        "INSERT OR IGNORE INTO postal_labels (batch_id, recipient_id, name, postal_address, "
        f"country) SELECT :batch, id, name, postal_address, country FROM relay_recipients "
        f"WHERE profile = 'postal' AND {EFFECTIVE} = :language",
        {**groups, "batch": batch})
