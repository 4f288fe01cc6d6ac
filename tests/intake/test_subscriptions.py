"""Subscribing and leaving: the confirmation round trip, the charter, one-click leave."""

from __future__ import annotations

import email
import email.policy
import email.utils
import uuid
from datetime import timedelta

import pytest

from listserv.errors import TokenError
from listserv.intake import commands, leaving, subscriptions
from listserv.mail.addresses import classify
from listserv.mail.message import parse
from listserv.site import forums, members

DOMAIN = "lists.example.org"
ANA = "ana@example.org"


# -- helpers shared with test_commands.py ------------------------------------------
def letter(to: str, sender: str = f"Ana Silva <{ANA}>", subject: str = "", body: str = "",
           extra: str = "") -> bytes:
    """A plain message as a person's mail program would send it."""
    head = (f"From: {sender}\nTo: {to}\nSubject: {subject}\n"
            f"Message-ID: <{uuid.uuid4().hex}@example.org>\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\nMIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n{extra}")
    return (head + "\n" + body).replace("\n", "\r\n").encode("utf-8")


def receive(site, raw: bytes, mail_from: str = ANA):
    """Store a message as intake would; returns (parsed, row id)."""
    row_id = site.db["messages"].insert({
        "received_at": "2026-11-23T09:00:00+00:00", "mail_from": mail_from, "rcpt_tos": "[]",
        "raw": raw, "size": len(raw)}).last_pk
    return parse(raw, mail_from), row_id


def send_request(site, forum: dict, kind: str, raw: bytes, now, mail_from: str = ANA):
    parsed, row_id = receive(site, raw, mail_from)
    with site.db.atomic():
        commands.handle_request(site.db, site, forum, kind, parsed, row_id, now)
    return parsed


def send_confirm(site, forum: dict, token: str, raw: bytes, now, mail_from: str = ANA) -> bool:
    parsed, row_id = receive(site, raw, mail_from)
    with site.db.atomic():
        return commands.handle_confirm(site.db, site, forum, token, parsed, row_id, now)


def queued_to(site, address: str) -> list:
    """Every message queued for `address`, oldest first, as the sink would see it."""
    rows = site.db.execute("SELECT b.raw FROM deliveries d JOIN bodies b ON b.id = d.body_id "
                           "WHERE d.recipient = ? ORDER BY d.id", [address.lower()])
    return [email.message_from_bytes(raw, policy=email.policy.default) for (raw,) in rows]


def text_of(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def token_of(message) -> str:
    """The token of a confirmation request, read from its Reply-To."""
    _, reply_to = email.utils.parseaddr(str(message["Reply-To"]))
    local = reply_to.split("@")[0]
    assert local.startswith("peace-confirm+"), reply_to
    return local.split("+", 1)[1]


@pytest.fixture
def forum(site, now):
    return forums.create(site.db, "peace", title="Peace and dialogue", path="thematic", now=now)


# -- the round trip -------------------------------------------------------------------
def test_subscribing_by_mail_asks_for_confirmation_with_the_charter_and_a_reply_makes_a_member(
        site, forum, now):
    asked = send_request(site, forum, "join", letter(f"peace-join@{DOMAIN}", subject="join"), now)
    (request,) = queued_to(site, ANA)
    assert request["In-Reply-To"] == f"<{asked.message_id}>"
    assert request["From"] == f"peace-request@{DOMAIN}"
    assert "CHARTER OF THE ALLIANCE" in text_of(request)
    assert members.find(site.db, forum["id"], ANA) is None

    later = now + timedelta(hours=2)
    reply = letter(str(request["Reply-To"]), subject=f"Re: {request['Subject']}", body="yes")
    assert send_confirm(site, forum, token_of(request), reply, later) is True

    member = members.find(site.db, forum["id"], ANA)
    assert member["charter_accepted_at"] == later.isoformat()
    assert member["name"] == "Ana Silva" and member["mode"] == "each"
    events = [row["kind"] for row in site.db.query(
        "SELECT kind FROM events WHERE address = ? AND at = ?", [ANA, later.isoformat()])]
    assert "charter-accepted" in events
    welcome = queued_to(site, ANA)[-1]
    assert "Welcome" in welcome["Subject"]
    assert f"peace-leave@{DOMAIN}" in text_of(welcome)


def test_subscribe_digest_lowband_lang_fr_is_confirmed_in_french_with_the_french_charter(
        site, forum, now):
    send_request(site, forum, "request", letter(f"peace-request@{DOMAIN}",
                                                body="subscribe digest lowband lang=fr\n"), now)
    confirmation = [m for m in queued_to(site, ANA) if m["Reply-To"]]
    (request,) = confirmation
    assert "CHARTE DE L'ALLIANCE" in text_of(request)
    assert "confirmer" in request["Subject"].lower()
    send_confirm(site, forum, token_of(request), letter(str(request["Reply-To"])), now)
    member = members.find(site.db, forum["id"], ANA)
    assert (member["mode"], member["profile"], member["language"]) == ("digest", "lowband", "fr")
    assert "Bienvenue" in queued_to(site, ANA)[-1]["Subject"]


def test_the_sites_own_charter_is_sent_in_the_members_language(site, forum, now):
    (site.charter / "es.txt").write_text("Nuestra carta propia.\n", encoding="utf-8")
    subscriptions.request_subscription(site.db, site, forum, ANA, {"language": "es"}, now)
    (request,) = queued_to(site, ANA)
    assert "Nuestra carta propia." in text_of(request)
    assert "CARTA DE LA ALIANZA" not in text_of(request)


def test_a_forum_without_the_charter_sends_no_charter_and_records_no_acceptance(
        site, now):
    forum = forums.create(site.db, "peace", title="Peace", path="thematic", now=now,
                          charter=False)
    subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    (request,) = queued_to(site, ANA)
    assert "CHARTER" not in text_of(request)
    send_confirm(site, forum, token_of(request), letter(str(request["Reply-To"])), now)
    assert members.find(site.db, forum["id"], ANA)["charter_accepted_at"] is None


def test_the_token_lives_as_long_as_the_confirm_setting(site, forum, now):
    with site.db.atomic():
        subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    (row,) = site.db.query("SELECT * FROM tokens WHERE purpose = 'subscribe'")
    lifetime = site.settings.moderation.confirm_seconds
    assert row["expires_at"] == (now + timedelta(seconds=lifetime)).isoformat()
    assert row["address"] == ANA


def test_the_round_trip_reaches_the_sink_through_the_delivery_engine(site, sink, forum, now):
    from listserv.delivery.engine import deliver_pending
    send_request(site, forum, "join", letter(f"peace-join@{DOMAIN}", body="lang=pt\n",
                                             subject="subscribe lang=pt"), now)
    deliver_pending(site, now)
    (request,) = sink.wait_for_recipient(ANA)
    assert "CARTA DA ALIANÇA" in text_of(request)
    send_confirm(site, forum, token_of(request), letter(str(request["Reply-To"])), now)
    deliver_pending(site, now)
    welcome = sink.wait_for_recipient(ANA, 2)[-1]
    assert "Boas-vindas" in welcome["Subject"]
    assert welcome["Auto-Submitted"] == "auto-replied"


# -- what must not work ------------------------------------------------------------------
def test_an_unknown_token_is_left_to_the_moderation_code(site, forum, now):
    raw = letter(f"peace-confirm+{'0' * 32}@{DOMAIN}")
    assert send_confirm(site, forum, "0" * 32, raw, now) is False
    assert queued_to(site, ANA) == []


def test_a_used_token_gets_a_clear_answer_and_changes_nothing(site, forum, now):
    subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    (request,) = queued_to(site, ANA)
    token = token_of(request)
    send_confirm(site, forum, token, letter(str(request["Reply-To"])), now)
    members.update(site.db, members.find(site.db, forum["id"], ANA)["id"], {"mode": "digest"},
                   site.settings.site.languages)
    assert send_confirm(site, forum, token, letter(str(request["Reply-To"])), now) is True
    answer = queued_to(site, ANA)[-1]
    assert "already been used" in text_of(answer)
    assert members.find(site.db, forum["id"], ANA)["mode"] == "digest"


def test_an_expired_token_gets_a_clear_answer_and_makes_no_member(site, forum, now):
    subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    (request,) = queued_to(site, ANA)
    late = now + timedelta(seconds=site.settings.moderation.confirm_seconds + 1)
    assert send_confirm(site, forum, token_of(request), letter(str(request["Reply-To"])),
                        late) is True
    assert "expired" in text_of(queued_to(site, ANA)[-1])
    assert members.find(site.db, forum["id"], ANA) is None


def test_a_confirmation_from_another_address_is_refused_and_the_token_still_works(
        site, forum, now):
    subscriptions.request_subscription(site.db, site, forum, ANA, {"language": "pt"}, now)
    (request,) = queued_to(site, ANA)
    token = token_of(request)
    other = "mallory@example.net"
    send_confirm(site, forum, token, letter(str(request["Reply-To"]), sender=other), now,
                 mail_from=other)
    assert members.find(site.db, forum["id"], ANA) is None
    assert members.find(site.db, forum["id"], other) is None
    (refusal,) = queued_to(site, other)
    assert "outro endereço" in text_of(refusal)  # in the language of the request
    send_confirm(site, forum, token, letter(str(request["Reply-To"])), now)
    assert members.find(site.db, forum["id"], ANA) is not None


def test_a_confirmation_for_another_forum_does_nothing_here(site, forum, now):
    other = forums.create(site.db, "farmers", title="Farmers", path="socioprofessional",
                          now=now)
    subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    (request,) = queued_to(site, ANA)
    assert send_confirm(site, other, token_of(request), letter(f"farmers-confirm@{DOMAIN}"),
                        now) is True
    assert members.find(site.db, other["id"], ANA) is None
    assert "another forum" in text_of(queued_to(site, ANA)[-1])


def test_an_automatic_reply_to_the_confirmation_confirms_nothing(site, forum, now):
    subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    (request,) = queued_to(site, ANA)
    vacation = letter(str(request["Reply-To"]), subject="Out of office",
                      extra="Auto-Submitted: auto-replied\n")
    assert send_confirm(site, forum, token_of(request), vacation, now) is True
    assert members.find(site.db, forum["id"], ANA) is None
    assert len(queued_to(site, ANA)) == 1


def test_an_existing_member_is_told_so_and_gets_no_token(site, forum, now):
    members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages)
    outcome = subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
    assert outcome == "member"
    assert site.db["tokens"].count == 0


def test_unanswered_requests_are_not_repeated_endlessly(site, forum, now):
    outcomes = [subscriptions.request_subscription(site.db, site, forum, ANA, {}, now)
                for _ in range(5)]
    assert outcomes == ["sent"] * 3 + ["throttled"] * 2


# -- forums that approve their members ---------------------------------------------------
def test_a_confirmed_request_to_an_approving_forum_waits_for_a_facilitator(
        site, now):
    forum = forums.create(site.db, "peace", title="Peace", path="thematic", now=now,
                          subscription="approve")
    subscriptions.request_subscription(site.db, site, forum, ANA, {"mode": "digest"}, now)
    (request,) = queued_to(site, ANA)
    send_confirm(site, forum, token_of(request), letter(str(request["Reply-To"])), now)
    assert members.find(site.db, forum["id"], ANA) is None
    (pending,) = subscriptions.pending_requests(site.db, forum["id"], now)
    assert pending["address"] == ANA and '"mode": "digest"' in pending["data"]
    assert "approval" in queued_to(site, ANA)[-1]["Subject"]
    assert subscriptions.request_subscription(site.db, site, forum, ANA, {}, now) == "pending"


# -- leaving -----------------------------------------------------------------------------
def test_leaving_by_mail_is_confirmed_by_the_address_itself_then_says_goodbye(
        site, forum, now):
    members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages,
                language="es")
    forged = letter(f"peace-leave@{DOMAIN}", sender=ANA)  # anyone can write this From
    send_request(site, forum, "leave", forged, now, mail_from="mallory@example.net")
    assert members.find(site.db, forum["id"], ANA) is not None  # not silently removed
    (request,) = queued_to(site, ANA)
    assert "baja" in request["Subject"]
    send_confirm(site, forum, token_of(request), letter(str(request["Reply-To"]), sender=ANA),
                 now)
    assert members.find(site.db, forum["id"], ANA) is None
    goodbye = queued_to(site, ANA)[-1]
    assert "Se ha dado de baja" in goodbye["Subject"]


def test_the_own_leave_address_removes_the_member_at_once_and_only_once(site, forum, now):
    members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages)
    address = subscriptions.leave_address(site, "peace", ANA)
    assert len(address.split("@")[0]) <= 64  # RFC 5321's limit on a local part
    recipient = classify(address, DOMAIN)
    assert recipient.kind == "leave" and recipient.slug == "peace"
    with site.db.atomic():
        said = leaving.leave_by_mail(site.db, site, forum, recipient.detail, ANA, now)
    assert ANA in said and members.find(site.db, forum["id"], ANA) is None
    with site.db.atomic():
        leaving.leave_by_mail(site.db, site, forum, recipient.detail, ANA, now)
    (goodbye,) = queued_to(site, ANA)
    assert "left" in goodbye["Subject"]


def test_a_leave_address_used_by_another_sender_removes_nobody(site, forum, now):
    members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages)
    code = classify(subscriptions.leave_address(site, "peace", ANA), DOMAIN).detail
    for forged, sender in ((code, "mallory@example.net"), (code[:-2] + "aa", ANA),
                           ("not-a-code", ANA), (code, None)):
        with pytest.raises(TokenError):
            leaving.leave_by_mail(site.db, site, forum, forged, sender, now)
    assert members.find(site.db, forum["id"], ANA) is not None


def test_a_tampered_https_link_removes_nobody(site, forum, now):
    from listserv.mail.tokens import sign_link
    members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages)
    ana = sign_link(site.secret, "u", "peace", ANA)
    ben = sign_link(site.secret, "u", "peace", "ben@example.org")
    with site.db.atomic():
        assert ANA in leaving.one_click_unsubscribe(site.db, site, ana, now)
    members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages)
    for forged in (ana.split(".")[0] + "." + ben.split(".")[1], "not-a-token", ana[:-2]):
        with pytest.raises(TokenError):
            leaving.one_click_unsubscribe(site.db, site, forged, now)
    assert members.find(site.db, forum["id"], ANA) is not None
