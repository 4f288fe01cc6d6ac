"""The relay's side of federation: its hub, publications received, acknowledgements.

A relay knows one hub: `[relay] hub` (its `relay@` address), `hub_node`
(its node id; the domain of `hub` when empty) and `secret_file` (the secret
the two share, relative to the site folder). `receive_publication` keeps a
publication once per key with its translation deadline and acknowledges it;
`send_ack` tells the hub a stage is done (received, translated, dispatched
with counts), once per publication and stage. Writes `relay_publications`;
queues acknowledgements through federation.queue_envelope.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from pathlib import Path

from listserv.errors import ConfigError
from listserv.mail.addresses import domain_of
from relays.federation import queue_envelope, read_secrets

log = logging.getLogger(__name__)

KINDS = ("whatsnew", "digest")
MAX_ATTEMPTS = 5


def hub_node(settings) -> str:
    return (settings.relay.hub_node or domain_of(settings.relay.hub)).lower()


def secret_path(site) -> Path:
    return site.folder / site.settings.relay.secret_file


def hub_secrets(site, node: str) -> list[bytes] | None:
    """The shared secrets when `node` is our hub, None for any other node."""
    settings = site.settings
    if not settings.relay.hub or node.lower() != hub_node(settings):
        return None
    return read_secrets(secret_path(site))


def check_relay_settings(site) -> None:
    """A relay needs its hub and the shared secret before it serves."""
    settings = site.settings
    if settings.site.role != "relay":
        return
    if not settings.relay.hub:
        raise ConfigError(f"{settings.source}: [relay] hub must be set on a relay: the hub's "
                          f"federation address, e.g. 'relay@lists.example.org'")
    read_secrets(secret_path(site))


def send_ack(db, site, key: str, stage: str, counts: dict, now: datetime,
             part: str = "") -> None:
    """Tell the hub that `stage` is done for publication `key` (once per stage,
    or per stage and `part`, e.g. each postal batch posted)."""
    settings = site.settings
    if not settings.relay.hub:
        log.warning("no [relay] hub: acknowledgement %s of %s not sent", stage, key)
        return
    ref = f"relay-ack:{key}:{stage}" + (f":{part}" if part else "")
    if db.execute("SELECT 1 FROM deliveries WHERE ref = ? LIMIT 1", [ref]).fetchone():
        return
    body = {"publication": key, "stage": stage, "counts": counts, "at": now.isoformat()}
    summary = json.dumps(counts, ensure_ascii=False)[:2000]
    queue_envelope(db, site, kind="ack", to_node=hub_node(settings), to_address=settings.relay.hub,
                   body=body, secret=read_secrets(secret_path(site))[0], ref=ref,
                   subject=f"{key} {stage}",
                   text=f"The relay {settings.node_id} has {stage} {key}.\n{summary}\n",
                   now=now)


def receive_publication(db, site, envelope: dict, now: datetime) -> bool:
    """Keep a publication from the hub once; False when it cannot be read."""
    publication = envelope["body"].get("publication")
    if not isinstance(publication, dict):
        log.warning("publication message %s carries no publication", envelope["id"])
        return False
    key, payload = publication.get("key"), publication.get("payload")
    if not isinstance(key, str) or not key or not isinstance(payload, dict) or \
            publication.get("kind") not in KINDS:
        log.warning("publication message %s has no key, kind or payload", envelope["id"])
        return False
    language = str(publication.get("language") or payload.get("language") or "en")[:8]
    deadline = now + timedelta(seconds=site.settings.relay.deadline_seconds)
    if db.execute("SELECT 1 FROM relay_publications WHERE key = ?", [key]).fetchone():
        log.info("publication %s was already received; kept as it was", key)
    else:
        db["relay_publications"].insert({
            "key": key[:200], "kind": publication["kind"],
            "number": int(publication.get("number") or 0),
            "title": str(publication.get("title") or payload.get("title") or key)[:300],
            "language": language, "payload": json.dumps(payload, ensure_ascii=False),
            "envelope": envelope["id"], "status": "received", "received_at": now.isoformat(),
            "deadline_at": deadline.isoformat()})
        log.info("publication %s received from the hub; translation deadline %s", key,
                 deadline.isoformat()[:16])
    send_ack(db, site, key, "received", {}, now)
    return True


def guarded(db, publication: dict, what: str, work, *args) -> None:
    """Run one publication's step in its own savepoint; a step that keeps failing
    sets the publication aside ('failed', with the reason) after MAX_ATTEMPTS."""
    try:
        with db.atomic():
            work(*args)
    except Exception as error:
        log.exception("%s of publication %s failed", what, publication["key"])
        db.execute("UPDATE relay_publications SET attempts = attempts + 1, error = ?, "
                   "status = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE status END "
                   "WHERE id = ?", [f"{what}: {type(error).__name__}: {error}"[:500],
                                    MAX_ATTEMPTS, publication["id"]])
