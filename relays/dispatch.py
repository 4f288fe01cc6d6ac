"""Dispatch at a relay: a ready publication to its lowband and postal recipients.

For a publication whose translation is over ('ready'), in one transaction:
references for its items and links, the lowband copies (rendered once per
language and byte budget, queued to every lowband recipient of that group
in one statement inside SQLite), one postal batch per language with its
recipients fixed (`postal_labels`; the files are built afterwards by
`postal.py`), the status 'dispatched' and the acknowledgement to the hub
with the counts per profile. A recipient whose language the relay does not
translate into gets the original. Refs are `relay-lowband:KEY:LANG:BUDGET:N`
per recipient, so nobody gets a part twice. Writes `relay_links`,
`bodies`, `deliveries`, `postal_batches`, `postal_labels` and the
publication's status.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from listserv.delivery.queue import store_body
from relays import node
from relays.lowband import lowband_parts
from relays.postal import batch_id, folder_of
from relays.render import assign_refs, localise, segments_by_path
from relays.translation import progress

log = logging.getLogger(__name__)

EFFECTIVE = ("CASE WHEN language IN (SELECT value FROM json_each(:targets)) THEN language "
             "ELSE :original END")


def dispatch_ready(db, site, now: datetime, limit: int = 2) -> int:
    """Dispatch up to `limit` ready publications, each in its own transaction."""
    rows = list(db.query("SELECT * FROM relay_publications WHERE status = 'ready' "
                         "ORDER BY ready_at, id LIMIT ?", [limit]))
    for row in rows:
        node.guarded(db, row, "dispatch", dispatch, db, site, row, now)
    return len(rows)


def dispatch(db, site, publication: dict, now: datetime) -> dict:
    """Queue the lowband copies, open the postal batches, tell the hub; returns the counts."""
    payload = json.loads(publication["payload"])
    targets = [row[0] for row in db.execute(
        "SELECT DISTINCT language FROM translation_segments WHERE publication_id = ?",
        [publication["id"]])]
    extra = [(path.rsplit(".", 1)[0], text) for path, text in db.execute(
        "SELECT path, text FROM translation_segments WHERE publication_id = ? AND "
        "text IS NOT NULL AND path LIKE 'sections.%.items.%'", [publication["id"]])]
    refs = assign_refs(db, publication["id"], payload, extra)
    views: dict[str, dict] = {}

    def view_for(language: str) -> dict:
        if language not in views:
            segments = segments_by_path(db, publication["id"], language) \
                if language in targets else {}
            views[language] = localise(payload, publication, language, segments, refs)
        return views[language]

    groups = {"targets": json.dumps(targets), "original": publication["language"]}
    counts = {"lowband": {"recipients": 0, "messages": 0, "bytes": 0},
              "postal": {"recipients": 0, "batches": 0}}
    sender = f"listserv-bounces@{site.settings.domain}"
    for language, budget, number in db.execute(
            f"SELECT {EFFECTIVE} AS lang, budget, count(*) FROM relay_recipients "
            "WHERE profile = 'lowband' GROUP BY lang, budget ORDER BY lang, budget",
            groups).fetchall():
        parts = lowband_parts(site, view_for(language), budget, now)
        for part, data in enumerate(parts, 1):
            ref = f"relay-lowband:{publication['key']}:{language}:{budget}:{part}"
            body_id = store_body(db, ref, data, now)
            queued = _enqueue_group(db, ref, body_id, sender, now, language, budget, groups)
            counts["lowband"]["messages"] += queued
            counts["lowband"]["bytes"] = max(counts["lowband"]["bytes"], len(data))
        counts["lowband"]["recipients"] += number
    for language, number in db.execute(
            f"SELECT {EFFECTIVE} AS lang, count(*) FROM relay_recipients "
            "WHERE profile = 'postal' GROUP BY lang ORDER BY lang", groups).fetchall():
        _open_batch(db, site, publication, language, groups, number, now)
        counts["postal"]["recipients"] += number
        counts["postal"]["batches"] += 1
    db.execute("UPDATE relay_publications SET status = 'dispatched', dispatched_at = ?, "
               "counts = ? WHERE id = ?", [now.isoformat(), json.dumps(counts),
                                           publication["id"]])
    node.send_ack(db, site, publication["key"], "dispatched",
                  {"profiles": counts, "languages": progress(db, publication["id"])}, now)
    log.info("publication %s dispatched: %d lowband recipients (%d messages), %d postal "
             "recipients in %d batches", publication["key"], counts["lowband"]["recipients"],
             counts["lowband"]["messages"], counts["postal"]["recipients"],
             counts["postal"]["batches"])
    return counts


def _enqueue_group(db, ref: str, body_id: int, sender: str, now: datetime, language: str,
                   budget: int, groups: dict) -> int:
    stamp = now.timestamp()
    before = db.conn.total_changes
    db.execute(
        "INSERT OR IGNORE INTO deliveries (ref, body_id, recipient, domain, sender, next_at, "
        "created_at) SELECT :ref, :body, address, lower(substr(address, instr(address, '@') "
        "+ 1)), :sender, :stamp, :stamp FROM relay_recipients WHERE profile = 'lowband' AND "
        f"budget = :budget AND {EFFECTIVE} = :language ORDER BY 4, address",
        {**groups, "ref": ref, "body": body_id, "sender": sender, "stamp": stamp,
         "budget": budget, "language": language})
    return db.conn.total_changes - before


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
        {**groups, "batch": batch, "language": language})
