"""The federation lines of `listserv status`: relays, publications, refusals.

`collect` reads what the screen needs (on the hub: each relay's sends and
acknowledgements; on a relay: publications by status, recipients, sheets
and postal batches waiting; on both: federation messages refused lately,
latest first, with their reasons), `describe` turns it into lines. Reads
only; registered in listserv/cli/main.py as a section of `listserv status`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

KEY = "federation"
RECENT = 5


def collect(site, now: datetime) -> dict:
    db, settings = site.db, site.settings
    since = (now - timedelta(days=7)).isoformat()
    refused = list(db.query("SELECT at, node, mail_from, reason FROM federation_refusals "
                            "ORDER BY id DESC LIMIT ?", [RECENT]))
    data = {"role": settings.site.role,
            "refused_last_7_days": db.execute("SELECT count(*) FROM federation_refusals "
                                              "WHERE at >= ?", [since]).fetchone()[0],
            "refused": refused}
    if settings.site.role == "hub":
        data["relays"] = list(db.query(
            "SELECT r.id, r.status, count(s.id) AS sent, count(s.received_at) AS received, "
            "count(s.dispatched_at) AS dispatched, max(coalesce(s.dispatched_at, "
            "s.translated_at, s.received_at)) AS last_ack FROM relays r "
            "LEFT JOIN relay_sends s ON s.relay_id = r.id GROUP BY r.id ORDER BY r.id"))
        return data
    data["hub"] = settings.relay.hub
    data["publications"] = dict(db.execute(
        "SELECT status, count(*) FROM relay_publications GROUP BY status").fetchall())
    data["failed"] = list(db.query("SELECT key, error FROM relay_publications "
                                   "WHERE status = 'failed' ORDER BY id DESC LIMIT ?",
                                   [RECENT]))
    data["recipients"] = dict(db.execute(
        "SELECT profile, count(*) FROM relay_recipients GROUP BY profile").fetchall())
    data["sheets_open"] = db.execute("SELECT count(*) FROM translation_sheets WHERE status "
                                     "IN ('open', 'unassigned')").fetchone()[0]
    data["postal"] = dict(db.execute(
        "SELECT status, count(*) FROM postal_batches GROUP BY status").fetchall())
    return data


def describe(data: dict) -> list[str]:
    lines = []
    if data["role"] == "hub":
        relays = data["relays"]
        lines.append(f"Relays: {len(relays) or 'none'}" + ("" if relays else
                     " (add one with 'listserv relay add')"))
        for relay in relays:
            lines.append(f"  {relay['id']} ({relay['status']}): {relay['sent']} sent, "
                         f"{relay['received']} received, {relay['dispatched']} dispatched; "
                         f"last acknowledgement {(relay['last_ack'] or '-')[:16]}")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(data["publications"].items()))
        lines.append(f"Hub: {data['hub'] or 'not set ([relay] hub)'}")
        lines.append(f"Publications received: {counts or 'none yet'}")
        for row in data["failed"]:
            lines.append(f"  failed {row['key']}: {row['error']}")
        recipients = ", ".join(f"{k} {v}" for k, v in sorted(data["recipients"].items()))
        lines.append(f"Recipients: {recipients or 'none (listserv recipient add)'}; "
                     f"translation sheets open: {data['sheets_open']}")
        postal = ", ".join(f"{k} {v}" for k, v in sorted(data["postal"].items()))
        lines.append(f"Postal batches: {postal or 'none'}")
    lines.append(f"Federation messages refused in the last 7 days: "
                 f"{data['refused_last_7_days']}")
    for row in data["refused"]:
        lines.append(f"  {row['at'][:19]} from {row['mail_from'] or '?'} "
                     f"(node {row['node'] or '?'}): {row['reason']}")
    return lines


SECTION = (KEY, collect, describe)
