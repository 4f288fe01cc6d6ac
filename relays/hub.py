"""The hub's side of federation: its relays, what they carry, what they report.

`add_relay` / `edit_relay` register a relay node (its id, its `relay@`
address, the file with the secret the two share, the languages and regions
it serves, the forums whose digests it carries). `send_publications` queues
each publication to each relay that carries it (What's New always, the
chosen forums' digests), exactly once per (publication, relay): the
`relay_sends` row and the queued message are written in one transaction,
and the delivery engine retries with back-off while a relay is down.
`record_ack` writes what a relay reports (received, translated, dispatched
with counts per profile, and each postal batch posted) and `relay_report` is what `listserv relay list`
and `relay status` show. Writes `relays` and `relay_sends` (and, through
the queue, `bodies` and `deliveries`). Reads `publications`, which digests/
writes. Will not open a relay's postal addresses: the hub never has them.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

from listserv.errors import AlreadyExists, ListservError, NotFound
from listserv.mail.addresses import AddressError, check
from listserv.site import forums
from relays.federation import queue_envelope, read_secrets, write_new_secret

log = logging.getLogger(__name__)

NODE_ID = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,62}[a-z0-9])?$")
SKIPPED_STATUSES = ("draft", "preview", "cancelled", "withdrawn", "failed")
LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _relay_row(db, relay_id: str) -> dict:
    rows = list(db.query("SELECT * FROM relays WHERE id = ?", [relay_id]))
    if not rows:
        raise NotFound(f"relay '{relay_id}' does not exist (see 'listserv relay list')")
    return rows[0]


def _check_lists(db, languages, regions, digests) -> None:
    bad = [lang for lang in languages if not LANGUAGE.match(lang)]
    if bad:
        raise ListservError(f"--language '{bad[0]}' is not a language code like 'fr'")
    if any(not region.strip() or len(region) > 100 for region in regions):
        raise ListservError("--region must be a short name like 'West Africa'")
    for slug in digests:
        if forums.find(db, slug) is None:
            raise NotFound(f"forum '{slug}' does not exist (see 'listserv forum list')")


def add_relay(db, relay_id: str, *, address: str, secret_file: Path, now: datetime,
              languages=(), regions=(), digests=()) -> bool:
    """Register a relay; returns True when a new secret file was written."""
    if not NODE_ID.match(relay_id):
        raise ListservError(f"'{relay_id}' is not a node id: use lower-case letters, digits, "
                            f"dots and hyphens (the relay's [site] node_id, or its domain)")
    try:
        address = check(address)
    except AddressError as error:
        raise ListservError(f"--address {error}") from None
    _check_lists(db, languages, regions, digests)
    if db.execute("SELECT 1 FROM relays WHERE id = ?", [relay_id]).fetchone():
        raise AlreadyExists(f"relay '{relay_id}' already exists (see 'listserv relay edit')")
    path = Path(secret_file).resolve()
    created = not path.exists()
    if created:
        write_new_secret(path)
    read_secrets(path)
    db["relays"].insert({"id": relay_id, "address": address, "secret_file": str(path),
                         "languages": json.dumps(list(dict.fromkeys(languages))),
                         "regions": json.dumps(list(dict.fromkeys(regions))),
                         "digests": json.dumps(list(dict.fromkeys(digests))),
                         "status": "active", "created_at": now.isoformat()})
    log.info("relay %s added at %s", relay_id, address)
    return created


def edit_relay(db, relay_id: str, *, address: str | None = None,
               secret_file: Path | None = None, add_digests=(), remove_digests=(),
               languages=None, regions=None, status: str | None = None) -> dict:
    """Change a relay's settings; returns the row as it is now."""
    relay = _relay_row(db, relay_id)
    changes: dict = {}
    if address is not None:
        try:
            changes["address"] = check(address)
        except AddressError as error:
            raise ListservError(f"--address {error}") from None
    if secret_file is not None:
        path = Path(secret_file).resolve()
        read_secrets(path)
        changes["secret_file"] = str(path)
    _check_lists(db, languages or (), regions or (), add_digests)
    if add_digests or remove_digests:
        digests = [s for s in json.loads(relay["digests"]) if s not in remove_digests]
        changes["digests"] = json.dumps(list(dict.fromkeys(digests + list(add_digests))))
    if languages is not None:
        changes["languages"] = json.dumps(list(dict.fromkeys(languages)))
    if regions is not None:
        changes["regions"] = json.dumps(list(dict.fromkeys(regions)))
    if status is not None:
        if status not in ("active", "paused"):
            raise ListservError(f"status '{status}' must be 'active' or 'paused'")
        changes["status"] = status
    if changes:
        db["relays"].update(relay_id, changes)
    return _relay_row(db, relay_id)


def relay_secrets(db, node: str) -> list[bytes] | None:
    """The secrets shared with an active relay, None for a node we do not serve."""
    row = db.execute("SELECT secret_file FROM relays WHERE id = ? AND status = 'active'",
                     [node]).fetchone()
    return None if row is None else read_secrets(Path(row[0]))


def due_publications(db, relay: dict, limit: int) -> list[dict]:
    """Publications this relay carries and has not been sent: those made since it
    was added, and the last one of each kind made before (so it starts current)."""
    return list(db.query(
        "SELECT p.*, f.slug AS forum FROM publications p "
        "LEFT JOIN forums f ON f.id = p.forum_id "
        "WHERE NOT EXISTS (SELECT 1 FROM relay_sends s WHERE s.publication_id = p.id "
        "AND s.relay_id = :relay) "
        f"AND p.status NOT IN ({', '.join(repr(s) for s in SKIPPED_STATUSES)}) "
        "AND (p.kind = 'whatsnew' OR (p.kind = 'digest' AND f.slug IN "
        "(SELECT value FROM json_each(:digests)))) "
        "AND (p.created_at >= :since OR p.id = (SELECT max(q.id) FROM publications q "
        "WHERE q.kind = p.kind AND q.forum_id IS p.forum_id AND q.created_at < :since "
        f"AND q.status NOT IN ({', '.join(repr(s) for s in SKIPPED_STATUSES)}))) "
        "ORDER BY p.id LIMIT :limit",
        {"relay": relay["id"], "digests": relay["digests"], "since": relay["created_at"],
         "limit": limit}))


def send_publications(db, site, now: datetime, limit: int = 20) -> int:
    """Queue what each active relay is owed; returns how many sends were queued."""
    queued = 0
    for relay in db.query("SELECT * FROM relays WHERE status = 'active' ORDER BY id"):
        for publication in due_publications(db, relay, limit - queued):
            send_publication(db, site, relay, publication, now)
            queued += 1
        if queued >= limit:
            break
    return queued


def with_full_texts(db, site, payload: dict) -> dict:
    """The payload as relays get it: each What's New item trimmed for the bulletin
    also carries its whole text (`full`), so a relay's `get` and its printed
    copy can give it, and `item_length` says how the bulletin trims."""
    if not isinstance(payload, dict) or not isinstance(payload.get("sections"), list):
        return payload
    refs = {}
    for section in payload["sections"]:
        for item in (section.get("items") or []) if isinstance(section, dict) else []:
            ref = str(item.get("ref") or "") if isinstance(item, dict) else ""
            if ref.startswith("INIT-") and ref[5:].isdigit():
                refs[int(ref[5:])] = item
    if refs:
        for number, text in db.execute(
                "SELECT id, text FROM initiatives WHERE id IN (SELECT value FROM json_each(?))",
                [json.dumps(list(refs))]):
            whole = (text or "").replace("\r\n", "\n").strip()
            if whole and " ".join(whole.split()) != " ".join(str(refs[number].get("text")
                                                                  or "").split()):
                refs[number]["full"] = whole
        payload.setdefault("item_length", site.settings.whatsnew.item_length)
    return payload


def send_publication(db, site, relay: dict, publication: dict, now: datetime) -> None:
    """One publication to one relay: the send row and the signed message, together."""
    secret = read_secrets(Path(relay["secret_file"]))[0]
    try:
        payload = with_full_texts(db, site, json.loads(publication["payload"]))
    except ValueError:
        payload = {"text": str(publication["payload"])}
    body = {"publication": {
        "key": publication["key"], "kind": publication["kind"],
        "number": publication["number"], "title": publication["title"],
        "language": publication["language"], "forum": publication["forum"] or "",
        "created_at": publication["created_at"], "payload": payload}}
    ref = f"relay:{publication['key']}:{relay['id']}"
    text = (f"Publication {publication['key']} ({publication['title']}) from "
            f"{site.settings.node_id} to the relay {relay['id']}.\n"
            f"This message is read by the relay's listserv; nothing needs doing by hand.\n\n"
            + str(payload.get("text") or "")[:20000])
    envelope = queue_envelope(db, site, kind="publication", to_node=relay["id"],
                              to_address=relay["address"], body=body, secret=secret,
                              ref=ref, subject=f"{publication['key']}: {publication['title']}",
                              text=text, now=now)
    db["relay_sends"].insert({"publication_id": publication["id"], "relay_id": relay["id"],
                              "envelope": envelope["id"], "ref": ref,
                              "queued_at": now.isoformat()})
    log.info("publication %s queued to relay %s", publication["key"], relay["id"])


STAGES = ("received", "translated", "dispatched", "posted")


def record_ack(db, relay_id: str, body: dict, now: datetime) -> bool:
    """Write a relay's acknowledgement; False when it names nothing we sent it."""
    stage, key = body.get("stage"), body.get("publication")
    if stage not in STAGES or not isinstance(key, str):
        log.warning("acknowledgement from %s names no stage or publication: %r", relay_id,
                    body)
        return False
    row = db.execute("SELECT s.id FROM relay_sends s JOIN publications p "
                     "ON p.id = s.publication_id WHERE p.key = ? AND s.relay_id = ?",
                     [key, relay_id]).fetchone()
    if row is None:
        log.warning("relay %s acknowledged %s, which was not sent to it", relay_id, key)
        return False
    changes = {f"{stage}_at": str(body.get("at") or now.isoformat())[:40]}
    counts = body.get("counts")
    if stage in ("translated", "dispatched") and isinstance(counts, dict):
        changes[stage] = json.dumps(counts, ensure_ascii=False)[:20000]
    if stage == "posted" and isinstance(counts, dict):  # one per postal batch posted
        posted = json.loads(db.execute("SELECT posted FROM relay_sends WHERE id = ?",
                                       [row[0]]).fetchone()[0] or "{}")
        posted[str(counts.get("batch") or "?")[:100]] = {
            "language": str(counts.get("language") or "")[:8],
            "recipients": int(counts.get("recipients") or 0),
            "at": changes["posted_at"]}
        changes["posted"] = json.dumps(posted, ensure_ascii=False)[:20000]
    db["relay_sends"].update(row[0], changes)
    log.info("relay %s: %s %s", relay_id, key, stage)
    return True


def relay_report(db, relay_id: str | None = None) -> list[dict]:
    """Each relay (or one) with its sends: delivered, acknowledged, counts per profile."""
    relays = [_relay_row(db, relay_id)] if relay_id else \
        list(db.query("SELECT * FROM relays ORDER BY id"))
    report = []
    for relay in relays:
        sends = list(db.query(
            "SELECT p.key, p.title, s.queued_at, s.received_at, s.translated_at, "
            "s.dispatched_at, s.translated, s.dispatched, s.posted_at, s.posted, "
            "(SELECT d.status FROM deliveries d WHERE d.ref = s.ref LIMIT 1) AS delivery, "
            "(SELECT d.last_error FROM deliveries d WHERE d.ref = s.ref LIMIT 1) AS error "
            "FROM relay_sends s JOIN publications p ON p.id = s.publication_id "
            "WHERE s.relay_id = ? ORDER BY s.id DESC", [relay["id"]]))
        for send in sends:
            send["translated"] = json.loads(send["translated"] or "{}")
            send["dispatched"] = json.loads(send["dispatched"] or "{}")
            send["posted"] = json.loads(send["posted"] or "{}")
            postal = send["dispatched"].get("profiles", {}).get("postal")
            if isinstance(postal, dict):  # by post, dispatched means posted
                postal["posted"] = sum(b["recipients"] for b in send["posted"].values())
            send["delivery"] = send["delivery"] or "sent"  # pruned rows were sent
        latest = next((s["dispatched"] for s in sends if s["dispatched"]), {})
        refused = list(db.query("SELECT at, mail_from, reason FROM federation_refusals "
                                "WHERE node = ? ORDER BY id DESC LIMIT 5", [relay["id"]]))
        report.append({
            "id": relay["id"], "address": relay["address"], "status": relay["status"],
            "languages": json.loads(relay["languages"]),
            "regions": json.loads(relay["regions"]),
            "digests": json.loads(relay["digests"]), "added": relay["created_at"],
            "sent": len(sends),
            "waiting": sum(1 for s in sends if s["delivery"] in ("queued", "deferred",
                                                                  "sending")),
            "failed": sum(1 for s in sends if s["delivery"] in ("failed", "bounced")),
            "received": sum(1 for s in sends if s["received_at"]),
            "translated": sum(1 for s in sends if s["translated_at"]),
            "dispatched": sum(1 for s in sends if s["dispatched_at"]),
            "latest_counts": latest.get("profiles", {}),
            "refused": refused,
            "publications": sends,
        })
    return report


def other_refusals(db, limit: int = 5) -> list[dict]:
    """Federation mail refused that names no relay of this hub (forgeries, strangers)."""
    return list(db.query("SELECT at, node, mail_from, reason FROM federation_refusals "
                         "WHERE node NOT IN (SELECT id FROM relays) ORDER BY id DESC LIMIT ?",
                         [limit]))
