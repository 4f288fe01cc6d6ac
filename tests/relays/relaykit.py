"""Real hub and relay sites for the relays/ tests, and sample publications.

Sites are made by the real `listserv init` (`--role relay` for relays) and
their listserv.toml edited the way an operator would. Publications are
stored as digests/ stores them (rows of `publications`).
"""

from __future__ import annotations

import email
import email.policy
import json
import sqlite3
from datetime import datetime
from pathlib import Path

import helpers
from helpers import listserv, query  # noqa: F401 (query: for the relay tests)

HUB_DOMAIN = "lists.example.org"
SECRET = "5f0c8e2b7d1a4c6e9b3f0a2d4c6e8b1a3f5d7c9e1b3a5c7e"


def _edit(folder: Path, replacements: dict[str, str], extra: str = "") -> None:
    config = folder / "listserv.toml"
    text = config.read_text(encoding="utf-8")
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    config.write_text(text + extra, encoding="utf-8")


def make_hub(tmp_path: Path, *, smarthost: int | None = None,
             routes: dict[str, str] | None = None, name: str = "hub") -> Path:
    folder = tmp_path / name
    listserv("init", str(folder), "--domain", HUB_DOMAIN)
    _edit(folder, _delivery(smarthost, routes))
    return folder


def make_relay(tmp_path: Path, name: str, *, languages=("fr",), translators=None,
               deadline: str = "3d", smarthost: int | None = None,
               routes: dict[str, str] | None = None, secret: str = SECRET,
               budget: int = 20000) -> Path:
    """A relay `name` with domain NAME.example.org and node id NAME."""
    folder = tmp_path / name
    listserv("init", str(folder), "--domain", f"{name}.example.org", "--role", "relay")
    translators = translators or {}
    table = ", ".join(f'{lang} = "{who}"' for lang, who in translators.items())
    _edit(folder, {
        'hub = ""': f'hub = "relay@{HUB_DOMAIN}"',
        'node_id = ""': f'node_id = "{name}"',
        'languages = []': f'languages = {json.dumps(list(languages))}',
        'translators = {}': f'translators = {{ {table} }}',
        'deadline = "3d"': f'deadline = "{deadline}"',
        'lowband_budget = 20000': f'lowband_budget = {budget}',
        **_delivery(smarthost, routes)})
    (folder / "relay.key").write_text(secret + "\n", encoding="utf-8")
    return folder


def _delivery(smarthost: int | None, routes: dict[str, str] | None) -> dict[str, str]:
    changes = {'retry_schedule = ["1m", "5m", "15m", "1h", "2h", "4h"]':
               'retry_schedule = ["1s", "2s"]', 'secretariat = []':
               'secretariat = ["secretariat@example.org"]'}
    if smarthost:
        changes['smarthost = ""'] = f'smarthost = "127.0.0.1:{smarthost}"'
    if routes:
        table = ", ".join(f'"{domain}" = "{target}"' for domain, target in routes.items())
        changes["routes = {}"] = f"routes = {{ {table} }}"
    return changes


def whatsnew_payload(number: int = 17, *, link: str = "https://example.org/kayes") -> dict:
    """What's New as digests/publications.py documents it: one section, three items."""
    return {
        "key": f"whatsnew:{number}", "kind": "whatsnew", "number": number, "volume": 1,
        "title": f"What's New no. {number}", "language": "en",
        "period": {"start": "2026-11-09T00:00:00+00:00", "end": "2026-11-23T00:00:00+00:00"},
        "sections": [{"heading": "Regions and places", "subheading": "Sahel",
                      "path": "geocultural", "items": [
                          {"ref": "INIT-42", "title": "A new well in Kayes",
                           "text": "The village dug a well together. Photos at "
                                   "https://example.org/photos/well.",
                           "link": link, "language": "en", "region": "Sahel",
                           "path": "geocultural", "forum": "sahel-network"},
                          {"ref": "INIT-43", "title": "Semences paysannes",
                           "text": "Un échange de semences à Ségou.", "link": "",
                           "language": "fr", "region": "Mali", "path": "geocultural",
                           "forum": ""},
                          {"ref": "INIT-44", "title": "Water for schools",
                           "text": "Twelve schools now have clean water.", "link": "",
                           "language": "en", "region": "Niger", "path": "geocultural",
                           "forum": ""}]}],
        "text": "What's New ...", "html": "",
        "headings": {"fr": {"title": "Quoi de neuf", "geocultural": "Régions et lieux"},
                     "pt": {"title": "Novidades", "geocultural": "Regiões e lugares"}}}


def store_publication(db, payload: dict, now: datetime, forum_id: int | None = None,
                      status: str = "built") -> int:
    return db["publications"].insert({
        "key": payload["key"], "kind": payload["kind"], "forum_id": forum_id,
        "number": payload["number"], "title": payload["title"],
        "language": payload["language"], "payload": json.dumps(payload, ensure_ascii=False),
        "status": status, "created_at": now.isoformat()}).last_pk


def insert_publication(folder: Path, payload: dict, now: datetime) -> None:
    """Store a publication in a served hub's database, as digests/ would."""
    conn = sqlite3.connect(str(folder / "data" / "listserv.db"), timeout=30)
    try:
        with conn:
            conn.execute("INSERT INTO publications (key, kind, number, title, language, "
                         "payload, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'built', ?)",
                         [payload["key"], payload["kind"], payload["number"],
                          payload["title"], payload["language"],
                          json.dumps(payload, ensure_ascii=False), now.isoformat()])
    finally:
        conn.close()


def wait_until(predicate, timeout: float = 30, what: str = "it") -> None:
    """helpers.wait_until with a longer default: relay round trips cross two servers."""
    helpers.wait_until(predicate, timeout, what)


def parse(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def body_text(message) -> str:
    """The plain text as a reader's client shows it: format=flowed (RFC 3676)
    undone, stuffed spaces removed and soft line breaks joined."""
    part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    text = part.get_content().replace("\r\n", "\n")
    if part.get_param("format", "").lower() != "flowed":
        return text
    lines, joined = text.split("\n"), []
    carry = ""
    for line in lines:
        line = line[1:] if line.startswith(" ") else line
        if line.endswith(" ") and line != "-- ":
            carry += line
            continue
        joined.append(carry + line)
        carry = ""
    if carry:
        joined.append(carry)
    return "\n".join(joined)


def wire_text(message) -> str:
    """The plain text as it travels (wrapped, stuffed), for checking line lengths."""
    part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    return part.get_content().replace("\r\n", "\n")


def write_relay_site(folder: Path, name: str = "relay-a", *, smarthost: int | None = None,
                     languages=("fr",), translators=None, deadline: str = "3d",
                     budget: int = 20000, secret: str = SECRET) -> Path:
    """A relay site written directly (faster than `listserv init` for unit tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "templates").mkdir(exist_ok=True)
    translators = translators if translators is not None else {"fr": "tr@example.org"}
    table = ", ".join(f'{lang} = "{who}"' for lang, who in translators.items())
    delivery = f'smarthost = "127.0.0.1:{smarthost}"\n' if smarthost else ""
    (folder / "listserv.toml").write_text(
        f'[site]\ndomain = "{name}.example.org"\nname = "Relay {name}"\nrole = "relay"\n'
        f'node_id = "{name}"\nsecretariat = ["centre@example.org"]\n'
        f'[delivery]\n{delivery}retry_schedule = ["1s", "2s"]\ngive_up_after = "1m"\n'
        f'timeout = "10s"\nlowband_budget = {budget}\n'
        f'[relay]\nhub = "relay@{HUB_DOMAIN}"\nlanguages = {json.dumps(list(languages))}\n'
        f'translators = {{ {table} }}\ndeadline = "{deadline}"\n', encoding="utf-8")
    (folder / "relay.key").write_text(secret + "\n", encoding="utf-8")
    return folder


def run_pipeline(site, raw: bytes | str, now: datetime, rcpts: list[str],
                 mail_from: str = "someone@example.org") -> None:
    """Store a message as intake does and run the real pipeline on it, with the
    handlers `listserv serve` wires for this site's role."""
    from listserv.intake.pipeline import process_received
    from listserv.intake.smtp import store_incoming
    from listserv.serve import wire_extensions
    from relays.serving import relay_extensions

    if isinstance(raw, str):
        raw = raw.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    extensions = relay_extensions(site, wire_extensions(site))
    with site.db.atomic():
        store_incoming(site.db, raw, mail_from, rcpts, now)
    for _ in range(5):  # messages the pipeline stores for itself (upstream) too
        with site.db.atomic():
            if not process_received(site.db, site, now, 20, extensions):
                break


def receive(site, payload: dict, now: datetime) -> dict:
    """A publication as the relay keeps it after a signed message was admitted."""
    from relays import node

    envelope = {"id": f"test-{payload['key']}", "body": {"publication": {
        "key": payload["key"], "kind": payload["kind"], "number": payload["number"],
        "title": payload["title"], "language": payload["language"], "payload": payload}}}
    with site.db.atomic():
        node.receive_publication(site.db, site, envelope, now)
    return site.db["relay_publications"].get(
        site.db.execute("SELECT id FROM relay_publications WHERE key = ?",
                        [payload["key"]]).fetchone()[0])


def add_recipients(site, now: datetime, *rows: dict) -> None:
    from relays.recipients import add_recipient

    with site.db.atomic():
        for row in rows:
            row = dict(row)
            add_recipient(site.db, site, row.pop("who"), now=now, **row)


def outgoing(site, ref_pattern: str) -> list[tuple[str, bytes]]:
    """(recipient, bytes) of every queued message whose ref matches (SQL LIKE)."""
    return [(recipient, bytes(raw)) for recipient, raw in site.db.execute(
        "SELECT d.recipient, b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id "
        "WHERE d.ref LIKE ? ORDER BY d.id", [ref_pattern])]


def signed_publication(now: datetime, payload: dict, *, to: str = "relay-a",
                       secret: str = SECRET, sender: str = HUB_DOMAIN, trace=(),
                       at: datetime | None = None) -> bytes:
    """A publication message as the hub sends it to relay `to`."""
    from listserv.mail.compose import to_bytes
    from relays.federation import federation_message, new_envelope

    body = {"publication": {"key": payload["key"], "kind": payload["kind"],
                            "number": payload["number"], "title": payload["title"],
                            "language": payload["language"], "forum": "",
                            "created_at": now.isoformat(), "payload": payload}}
    envelope = new_envelope("publication", sender, to, body, at or now, trace)
    message = federation_message(envelope, secret.encode(), sender=f"relay@{HUB_DOMAIN}",
                                 to=f"relay@{to}.example.org", domain=HUB_DOMAIN,
                                 subject=payload["key"], text=payload["title"], now=now)
    return to_bytes(message)
