"""How many automatic replies one address gets: `[site] max_replies_per_hour`.

Every message the site writes on its own (command replies, confirmation
requests, notices to a sender, acknowledgements) goes to an address that
some incoming mail named, and that address may be forged. So each such
message is counted per recipient in `auto_replies`, and past the limit in
the last hour it is logged and not sent: one forged sender can make us
write to a third party a few times, never a flood. The site's own people
(the secretariat, any forum's facilitators) are not limited: they must be
told of every hold. Writes `auto_replies`; reads `facilitators`.
"""

from __future__ import annotations

import logging
from datetime import datetime

log = logging.getLogger(__name__)

WINDOW = 3600.0  # seconds


def is_staff(db, site, address: str) -> bool:
    """The secretariat, facilitators and a relay's translators (each sheet they
    answer is acknowledged): told of everything, never limited."""
    address = address.lower()
    if address in (a.lower() for a in site.settings.site.secretariat):
        return True
    relay = site.settings.relay
    if any(address in relay.translator_addresses(lang) for lang in relay.translators):
        return True
    return db.execute("SELECT 1 FROM facilitators WHERE address = ? LIMIT 1",
                      [address]).fetchone() is not None


def may_reply(db, site, to: str, ref: str, now: datetime) -> bool:
    """Count one automatic reply to `to`; False (logged) when it is over the limit."""
    if is_staff(db, site, to):
        return True
    address = to.lower()
    limit = site.settings.site.max_replies_per_hour
    since = now.timestamp() - WINDOW
    sent = db.execute("SELECT count(*) FROM auto_replies WHERE recipient = ? AND at > ?",
                      [address, since]).fetchone()[0]
    if sent >= limit:
        log.warning("automatic reply %s to %s not sent: %d already in the last hour "
                    "([site] max_replies_per_hour = %d)", ref, address, sent, limit)
        return False
    db.execute("INSERT INTO auto_replies (recipient, at, ref) VALUES (?, ?, ?)",
               [address, now.timestamp(), ref[:200]])
    return True


def prune(db, now: datetime) -> None:
    """Forget counts older than the window (housekeeping)."""
    db.execute("DELETE FROM auto_replies WHERE at < ?", [now.timestamp() - WINDOW])
