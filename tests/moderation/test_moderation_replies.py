"""Facilitators' decisions written in every client's shape, through `listserv serve`;
and a valid token from someone who is not a facilitator."""

from __future__ import annotations

import time

from facilitation import (
    DOMAIN,
    FAC,
    FAC2,
    NOW,
    ZOE,
    forum_site,
    holds_of,
    notices_to,
    post,
    wait_notice,
)
from helpers import running_server, send_mail
from replyshapes import SHAPES, reply_mail, text_of

from listserv.site import members
from listserv.site.folder import Site

POST_TO = [f"peace@{DOMAIN}"]
MALLORY = "mallory@example.net"
REASONS = {
    "en": ("reject", "Off topic here: please post it to the water network, where it belongs "
                     "and will be read"),
    "fr": ("rejeter", "Hors sujet ici : merci de l'envoyer au réseau de l'eau, où il sera lu "
                      "par les bonnes personnes"),
    "es": ("rechazar", "Fuera de tema aquí: envíalo a la red del agua, donde lo leerán las "
                       "personas adecuadas"),
    "pt": ("rejeitar", "Fora do tema aqui: envie para a rede da água, onde será lido pelas "
                       "pessoas certas")}


def test_a_decision_written_in_a_reply_is_carried_out_whatever_the_client_and_language(
        tmp_path, sink):
    """Each notice quoted in the replies says "approve" and carries the token:
    the "reject" written (above, below or between the quote, soft-broken by
    format=flowed or quoted-printable) rejects, with its whole reason."""
    folder = forum_site(tmp_path, sink)
    with running_server(folder) as server:
        for index in range(len(SHAPES)):
            send_mail(server.port, ZOE, POST_TO, post(subject=f"Water {index:02d}"))
        notices = {index: wait_notice(sink, FAC, f"Held for your decision: Water {index:02d}",
                                      timeout=60) for index in range(len(SHAPES))}
        for index, (client, language) in enumerate(SHAPES):
            assert "approve" in text_of(notices[index])
            word, reason = REASONS[language]
            send_mail(server.port, FAC, [notices[index]["Reply-To"]],
                      reply_mail(client, language, f"{word} {reason}", notices[index],
                                 sender=f"Facilitator <{FAC}>"))
        sink.wait_for(lambda s: len(notices_to(s, FAC, "Done: reject")) >= len(SHAPES), 60,
                      "every decision answered")
    by_subject = {hold["id"]: hold for hold in holds_of(folder)}  # posted in order
    wrong = []
    for index, (client, language) in enumerate(SHAPES):
        hold = by_subject[index + 1]
        if (hold["status"], hold["decision_reason"]) != ("rejected", REASONS[language][1]):
            wrong.append((client, language, hold["status"], hold["decision_reason"]))
    assert wrong == []


def test_a_valid_token_from_a_non_facilitator_changes_nothing_and_the_facilitators_are_told_once(
        tmp_path, sink):
    folder = forum_site(tmp_path, sink)
    site = Site(folder)
    members.add(site.db, "peace", FAC2, now=NOW, language="fr",
                languages=site.settings.site.languages)
    site.db.conn.close()
    with running_server(folder) as server:
        send_mail(server.port, ZOE, POST_TO, post())
        notice = wait_notice(sink, FAC)
        for client, language in (("gmail-web", "en"), ("outlook-web", "fr")):  # forwarded on
            send_mail(server.port, MALLORY, [notice["Reply-To"]],
                      reply_mail(client, language, "approve", notice,
                                 sender=f"Mallory <{MALLORY}>"))
        sink.wait_for_recipient(MALLORY, 2)
        told = wait_notice(sink, FAC, "Decision refused")
        told_fr = wait_notice(sink, FAC2, "Décision refusée")
        time.sleep(1)  # nothing more comes
        assert len(notices_to(sink, FAC, "Decision refused")) == 1
        assert len(notices_to(sink, FAC2, "Décision refusée")) == 1
        assert [h["status"] for h in holds_of(folder)] == ["held"]
        send_mail(server.port, FAC, [notice["Reply-To"]],
                  reply_mail("iphone", "en", "approve", notice, sender=FAC))
        wait_notice(sink, FAC, "Done: approve")
    assert told["Subject"] == f"[peace] Decision refused: {MALLORY} is not a facilitator"
    assert f"Mallory <{MALLORY}>" in text_of(told) and "Asked to: approve" in text_of(told)
    assert '"Water" from zoe@example.net' in text_of(told)
    assert f"Mallory <{MALLORY}>" in text_of(told_fr)
    assert [h["status"] for h in holds_of(folder)] == ["approved"]
    assert [str(m["Subject"]) for m in sink.messages_to(MALLORY)] == \
        ["Your decision was not carried out (peace)"] * 2
