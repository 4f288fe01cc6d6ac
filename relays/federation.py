"""Federation messages between the hub and its relays: signed JSON by email.

A federation message is ordinary email to the peer's `relay@` address: a
readable text part, and an `application/json` part holding
`{"envelope": {...}, "signature": "hmac-sha256:HEX"}`. The envelope is

    {"v": 1, "id": "<random, unique>", "type": "publication" | "ack" | "upstream",
     "from": "<node id>", "to": "<node id>", "at": "<ISO time>",
     "trace": ["<node id>", ...], "body": {...}}

and the signature is HMAC-SHA256, with the secret the two nodes share, over
the envelope's canonical JSON: keys sorted, no spaces, UTF-8 (no \\u
escapes), no floating-point numbers. The first secret of a secret file
signs; any of them verifies, so a secret can be rotated by adding the new
one beside the old. `X-Listserv-Trace` mirrors the signed trace for people.

`admit` is the gate every incoming federation message passes: it is acted
on only when readable, signed by a known peer with a current secret,
addressed to this node, not looping (this node in its trace), not stale and
not seen before; otherwise it is refused: a `federation_refusals` row and a
log line, and nothing else. Writes `federation_seen` and
`federation_refusals`; `queue_envelope` queues an outgoing message through
the outbound queue under a ref that makes sending it twice harmless.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets as random
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from listserv.delivery.queue import queue_message
from listserv.errors import ListservError
from listserv.mail.compose import compose
from listserv.mail.headers import clean_header_value
from listserv.mail.message import Parsed

log = logging.getLogger(__name__)

VERSION = 1
TYPES = ("publication", "ack", "upstream")
TRACE_HEADER = "X-Listserv-Trace"
FEDERATION_HEADER = "X-Listserv-Federation"
MAX_AGE = timedelta(days=30)
MAX_SKEW = timedelta(days=1)
MIN_SECRET = 16


class FederationError(ListservError):
    """A secret file is missing or unusable; str() says which and how to fix it."""


class Refused(Exception):
    """A federation message that must not be acted on; str() is the reason."""

    def __init__(self, reason: str, node: str = ""):
        super().__init__(reason)
        self.node = node


class Handled(Exception):
    """This very message was already admitted (it had two of our addresses)."""


def canonical(value) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8, no floats."""
    _no_floats(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _no_floats(value) -> None:
    if isinstance(value, float):
        raise ValueError("federation payloads carry no floating-point numbers")
    if isinstance(value, dict):
        for item in value.values():
            _no_floats(item)
    elif isinstance(value, list):
        for item in value:
            _no_floats(item)


def signature(envelope: dict, secret: bytes) -> str:
    return "hmac-sha256:" + hmac.new(secret, canonical(envelope), hashlib.sha256).hexdigest()


def is_signed_by(envelope: dict, given: str, secrets: list[bytes]) -> bool:
    return any(hmac.compare_digest(given.encode("ascii", "replace"),
                                   signature(envelope, secret).encode("ascii"))
               for secret in secrets)


# -- secrets -------------------------------------------------------------------
def read_secrets(path: Path) -> list[bytes]:
    """The secrets in a secret file, one a line ('#' comments allowed)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise FederationError(f"{path}: cannot read the federation secret "
                              f"({error.strerror or error})") from None
    found = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    if not found:
        raise FederationError(f"{path}: no secret in the file; put the shared secret on "
                              f"its first line")
    short = [s for s in found if len(s) < MIN_SECRET]
    if short:
        raise FederationError(f"{path}: a secret is shorter than {MIN_SECRET} characters; "
                              f"use a long random one (listserv relay add writes one)")
    return [s.encode("utf-8") for s in found[:2]]


def write_new_secret(path: Path) -> None:
    """Create a secret file holding one new random secret, readable by its owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(random.token_hex(32) + "\n")


# -- writing -------------------------------------------------------------------
def new_envelope(kind: str, sender: str, to: str, body: dict, now: datetime,
                 trace: list[str] | tuple[str, ...] = ()) -> dict:
    assert kind in TYPES, kind
    path = [node for node in trace if node != sender] + [sender]
    return {"v": VERSION, "id": random.token_hex(16), "type": kind, "from": sender, "to": to,
            "at": now.isoformat(), "trace": path, "body": body}


def federation_message(envelope: dict, secret: bytes, *, sender: str, to: str, domain: str,
                       subject: str, text: str, now: datetime) -> EmailMessage:
    """The email carrying a signed envelope: a readable part and the JSON part."""
    headers = {"Auto-Submitted": "auto-generated", "Precedence": "bulk",
               "X-Auto-Response-Suppress": "All",
               FEDERATION_HEADER: f"{envelope['type']} {envelope['id']}",
               TRACE_HEADER: ", ".join(envelope["trace"])}
    message = compose(sender=sender, to=to, subject=f"[federation] {subject}", text=text,
                      domain=domain, headers=headers, now=now)
    data = json.dumps({"envelope": envelope, "signature": signature(envelope, secret)},
                      ensure_ascii=False, sort_keys=True).encode("utf-8")
    message.add_attachment(data, maintype="application", subtype="json",
                           filename="federation.json")
    return message


def queue_envelope(db, site, *, kind: str, to_node: str, to_address: str, body: dict,
                   secret: bytes, ref: str, subject: str, text: str, now: datetime,
                   trace: list[str] | tuple[str, ...] = ()) -> dict:
    """Sign an envelope and queue its message once under `ref`; returns the envelope
    (a second call with the same ref queues nothing new)."""
    settings = site.settings
    envelope = new_envelope(kind, settings.node_id, to_node, body, now, trace)
    message = federation_message(envelope, secret, sender=f"relay@{settings.domain}",
                                 to=to_address, domain=settings.domain, subject=subject,
                                 text=text, now=now)
    queue_message(db, ref, message, [to_address], f"listserv-bounces@{settings.domain}", now)
    return envelope


# -- reading -------------------------------------------------------------------
def read_part(parsed: Parsed | None) -> tuple[dict, str]:
    """(envelope, signature) of a federation message; Refused when there is none."""
    if parsed is None:
        raise Refused("unreadable message")
    part = None
    for candidate in parsed.message.walk():
        if candidate.get_content_type() == "application/json":
            part = candidate
            break
    if part is None:
        raise Refused("unsigned: no federation (application/json) part")
    try:
        data = json.loads((part.get_payload(decode=True) or b"").decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise Refused("malformed federation part: not UTF-8 JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("envelope"), dict):
        raise Refused("malformed federation part: no envelope")
    envelope, given = data["envelope"], data.get("signature")
    if not isinstance(given, str) or not given:
        raise Refused("unsigned: the envelope has no signature",
                      str(envelope.get("from", ""))[:100])
    problem = _shape_problem(envelope)
    if problem:
        raise Refused(f"malformed envelope: {problem}", str(envelope.get("from", ""))[:100])
    return envelope, given


def _shape_problem(envelope: dict) -> str:
    if envelope.get("v") != VERSION:
        return f"version {envelope.get('v')!r} is not {VERSION}"
    for key in ("id", "from", "to", "at"):
        if not isinstance(envelope.get(key), str) or not envelope[key]:
            return f"'{key}' is missing"
    if envelope.get("type") not in TYPES:
        return f"unknown type {str(envelope.get('type'))[:40]!r}"
    trace = envelope.get("trace")
    if not isinstance(trace, list) or not all(isinstance(n, str) for n in trace):
        return "'trace' is not a list of node ids"
    if not isinstance(envelope.get("body"), dict):
        return "'body' is not an object"
    return ""


def header_trace(parsed: Parsed | None) -> list[str]:
    """Node ids in the message's trace headers (ours or any earlier hop's)."""
    if parsed is None:
        return []
    nodes = []
    try:
        values = [v for k, v in parsed.message.raw_items() if k.lower() == TRACE_HEADER.lower()]
    except Exception:
        return []
    for value in values:
        nodes += [n.strip().lower() for n in clean_header_value(value).split(",") if n.strip()]
    return nodes


def admit(db, row: dict, parsed: Parsed | None, *, node: str, secrets_for, now: datetime) \
        -> dict | None:
    """The envelope of a federation message that may be acted on, else None
    (the refusal is recorded and logged). `secrets_for(node)` gives a known
    peer's secrets, or None for a node we do not know."""
    try:
        envelope = check(db, parsed, node=node, secrets_for=secrets_for, now=now,
                         message_id=row.get("id"))
    except Handled:
        return None
    except Refused as refused:
        record_refusal(db, row, str(refused), refused.node, now)
        return None
    db.execute("INSERT INTO federation_seen (node, envelope, kind, message_id, at) "
               "VALUES (?, ?, ?, ?, ?)", [envelope["from"], envelope["id"], envelope["type"],
                                          row.get("id"), now.isoformat()])
    return envelope


def check(db, parsed: Parsed | None, *, node: str, secrets_for, now: datetime,
          message_id: int | None = None) -> dict:
    """Every check of `admit`, in order; Refused with the first that fails."""
    envelope, given = read_part(parsed)
    sender = envelope["from"]
    if envelope["to"] != node:
        raise Refused(f"addressed to node '{envelope['to'][:100]}', not to this node "
                      f"'{node}'", sender)
    peer_secrets = secrets_for(sender)
    if peer_secrets is None:
        raise Refused(f"unknown node '{sender[:100]}'", sender)
    if not is_signed_by(envelope, given, peer_secrets):
        raise Refused("bad signature: tampered with, or not signed with a current secret",
                      sender)
    if node.lower() in [n.lower() for n in envelope["trace"]] or \
            node.lower() in header_trace(parsed):
        raise Refused(f"loop: this node '{node}' is already in the trace "
                      f"{', '.join(envelope['trace'])}", sender)
    try:
        sent = datetime.fromisoformat(envelope["at"])
        old = now - sent > MAX_AGE or sent - now > MAX_SKEW
    except (ValueError, TypeError):
        raise Refused(f"malformed envelope: 'at' {envelope['at'][:40]!r} is not a time",
                      sender) from None
    if old:
        raise Refused(f"stale: sent at {envelope['at'][:25]}, outside the "
                      f"{MAX_AGE.days}-day window", sender)
    seen = db.execute("SELECT at, message_id FROM federation_seen WHERE node = ? AND "
                      "envelope = ?", [sender, envelope["id"]]).fetchone()
    if seen and message_id is not None and seen[1] == message_id:
        raise Handled()  # the same stored message, reaching us by a second recipient
    if seen:
        raise Refused(f"replayed: message {envelope['id']} from '{sender}' was already "
                      f"received at {seen[0][:19]}", sender)
    return envelope


def record_refusal(db, row: dict, reason: str, node: str, now: datetime) -> None:
    db["federation_refusals"].insert({
        "at": now.isoformat(), "message_id": row.get("id"),
        "mail_from": clean_header_value(row.get("mail_from", ""), 200), "node": node,
        "reason": reason[:500]})
    log.warning("federation message %s from %r (node %r) refused: %s", row.get("id"),
                row.get("mail_from"), node, reason)


def prune_seen(db, now: datetime) -> None:
    """Forget envelopes older than the stale window: they are refused as stale anyway."""
    db.execute("DELETE FROM federation_seen WHERE at < ?",
               [(now - MAX_AGE - MAX_SKEW).isoformat()])
