"""The site addresses relays/ answers, by the node's role.

On every node, `relay@D` takes federation messages: each passes the
federation gate (`federation.admit`) before anything is done with it. On
the hub: acknowledgements from relays (`hub.record_ack`) and upstream mail
(`upstream.inject`); a publication sent to a hub is refused. On a relay:
publications from its hub (`node.receive_publication`), and translators'
replies to `relay+CODE@D` (`sheets.handle_sheet_mail`). A relay also
answers `listserv@D` (readers' own `unsubscribe` and `set`, `get REF`,
help), makes a confirmed `whatsnew-join@D` reader a lowband recipient, and
passes up `whatsnew@D` and
`reply+FORUM@D`. `site_handlers` is what serve.py registers in
`Extensions.site`, `fetch` what it may register as `Extensions.fetch`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from listserv.intake.commands import parse_commands
from listserv.mail.addresses import classify, normalise
from listserv.mail.message import Parsed
from listserv.mail.text import text_body
from relays import hub, lowband, node, readers, sheets, upstream
from relays.federation import Refused, admit, record_refusal

log = logging.getLogger(__name__)

ACCEPTS = {"hub": ("ack", "upstream"), "relay": ("publication",)}


def codes(site, row: dict, local: str) -> tuple[bool, list[str]]:
    """(whether `local@D` itself is a recipient, the codes of `local+CODE@D` ones)."""
    plain, found = False, []
    for rcpt in json.loads(row["rcpt_tos"]):
        recipient = classify(normalise(rcpt), site.settings.domain, frozenset({local}))
        if recipient is None or recipient.kind != "site" or recipient.slug != local:
            continue
        if recipient.detail:
            found.append(recipient.detail)
        else:
            plain = True
    return plain, list(dict.fromkeys(found))


def on_relay_address(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """relay@D: federation; relay+CODE@D: a translator's reply (on a relay)."""
    plain, found = codes(site, row, "relay")
    role = site.settings.site.role
    if role == "relay":
        for code in found:
            sheets.handle_sheet_mail(db, site, row, parsed, code, now)
    if not plain and found:
        if role != "relay":
            log.info("message %s to relay+CODE@ on a hub: no sheets here; not read", row["id"])
        return
    if role == "hub":
        envelope = admit(db, row, parsed, node=site.settings.node_id,
                         secrets_for=lambda peer: hub.relay_secrets(db, peer), now=now)
    else:
        envelope = admit(db, row, parsed, node=site.settings.node_id,
                         secrets_for=lambda peer: node.hub_secrets(site, peer), now=now)
    if envelope is None:
        return
    if envelope["type"] not in ACCEPTS[role]:
        db.execute("DELETE FROM federation_seen WHERE node = ? AND envelope = ?",
                   [envelope["from"], envelope["id"]])
        record_refusal(db, row, str(Refused(f"a {role} does not take "
                                            f"'{envelope['type']}' messages")),
                       envelope["from"], now)
        return
    if envelope["type"] == "publication":
        node.receive_publication(db, site, envelope, now)
    elif envelope["type"] == "ack":
        hub.record_ack(db, envelope["from"], envelope["body"], now)
    else:
        upstream.inject(db, site, envelope["from"], envelope, now)


def on_whatsnew(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """whatsnew@D on a relay: an ally's initiative report, passed up to the hub."""
    upstream.pass_up(db, site, row, parsed, now, "initiative")


def on_reply_address(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """reply+FORUM@D on a relay: a reply for the hub's forum FORUM."""
    _plain, forums = codes(site, row, "reply")
    if site.settings.site.role != "relay" or not forums:
        log.info("message %s to reply@ is not for a relay forum reply; not passed up",
                 row["id"])
        return
    for forum in forums:
        upstream.pass_up(db, site, row, parsed, now, "reply", forum)


def on_command_address(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """listserv@D on a relay: readers' own commands (readers.py), `get` and help."""
    if parsed is not None and parsed.answerable and parsed.sender and \
            not parsed.sender[1].endswith("@" + site.settings.domain.lower()):
        if readers.answer(db, site, row, parsed, now):
            commands, _ = parse_commands(parsed.subject, text_body(parsed.message))
            if not any(c.name == "get" for c in commands):
                return
    lowband.answer_commands(db, site, row, parsed, now)


def on_whatsnew_confirm(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """whatsnew-confirm+CODE@D on a relay: the bulletin's confirmation, after which
    the reader is (or is no longer) one of the relay's lowband recipients."""
    from digests.bulletin import handle_confirm

    handle_confirm(db, site, row, parsed, now)
    if parsed is not None and parsed.sender:
        readers.sync_bulletin_reader(db, site, parsed.sender[1], now)


def site_handlers(site) -> dict:
    """The handlers to add to Extensions.site for this site's role (on a relay
    they replace any other whatsnew@ handler: its initiatives go to the hub)."""
    handlers = {"relay": on_relay_address}
    if site is not None and site.settings.site.role == "relay":
        news = getattr(getattr(site.settings, "whatsnew", None), "address", "") or "whatsnew"
        local = news.split("@")[0]
        handlers.update({local: on_whatsnew, f"{local}-confirm": on_whatsnew_confirm,
                         "reply": on_reply_address, "listserv": on_command_address})
    return handlers


fetch = lowband.fetch
