"""Reading the decision in a reply, as each common mail client lays a reply out."""

from __future__ import annotations

import pytest
from facilitation import LAYOUTS, reply_text

from listserv.mail.templates import render_mail
from moderation.words import first_written_line, read_decision, read_line

NOTICE_SUBJECT = "[peace] Held for your decision: Water"


@pytest.fixture(scope="module")
def notice_text() -> str:
    """A real notice, rendered from the shipped template: it lists every decision word."""
    _, body = render_mail(
        None, "moderation-held.txt", "en",
        site={"name": "Alliance", "domain": "lists.example.org", "postmaster": "p"},
        forum={"slug": "peace", "title": "Peace workshop", "language": "en"},
        addresses={}, hold={"id": 7, "reason": "not a member", "since": "2026-11-23"},
        sender="zoe@example.net", sent_from="Zoe <zoe@example.net>", member=False,
        subject="Water", lines=["approve this please", "reject the old plan"], more=0,
        decide={"address": "peace-confirm+abc@lists.example.org", "expires": "2026-12-07"})
    assert "  approve " in body and "  reject REASON" in body
    return body


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reject_written_in_a_reply_rejects_whatever_the_quoted_notice_says(notice_text, layout):
    body = reply_text(layout, "reject Off topic for this workshop", notice_text, NOTICE_SUBJECT)
    reading = read_decision("Re: " + NOTICE_SUBJECT, body)
    assert (reading.decision, reading.reason) == ("reject", "Off topic for this workshop")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("word, decision", [("approve", "approve"), ("Discard.", "discard"),
                                            ("accept-always", "accept-always"),
                                            ("Ban!", "ban"), ("accept always", "accept-always")])
def test_each_decision_word_is_read_in_every_client_layout(notice_text, layout, word, decision):
    body = reply_text(layout, word, notice_text, NOTICE_SUBJECT)
    assert read_decision("RE: " + NOTICE_SUBJECT, body).decision == decision


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_reply_that_writes_nothing_decides_nothing_though_the_quote_lists_the_words(
        notice_text, layout):
    body = reply_text(layout, "", notice_text, NOTICE_SUBJECT)
    reading = read_decision("Re: " + NOTICE_SUBJECT, body)
    assert (reading.decision, reading.problem) == (None, "none")


@pytest.mark.parametrize("line, decision, language", [
    ("Approuver", "approve", "fr"), ("rejeter hors sujet", "reject", "fr"),
    ("supprimer", "discard", "fr"), ("toujours accepter", "accept-always", "fr"),
    ("bannir", "ban", "fr"), ("aprobar", "approve", "es"), ("Rechazar spam", "reject", "es"),
    ("descartar", "discard", "es"), ("aceptar-siempre", "accept-always", "es"),
    ("bloquear", "ban", "es"), ("aprovar", "approve", "pt"), ("rejeitar", "reject", "pt"),
    ("descartar", "discard", "pt"), ("aceitar sempre", "accept-always", "pt"),
    ("banir", "ban", "pt"), ("Réjeter: hors sujet", "reject", "fr")])
def test_the_words_are_read_in_french_spanish_and_portuguese(line, decision, language):
    assert read_line(line)[0] == decision, language


def test_the_subject_alone_can_carry_the_decision_after_any_reply_prefixes():
    assert read_decision("Re: AW: approve", "").decision == "approve"
    reading = read_decision("RE : Réf. : reject spam, again", "")
    assert (reading.decision, reading.reason) == ("reject", "spam, again")
    assert read_decision("Re: " + NOTICE_SUBJECT, "").decision is None


def test_a_subject_and_a_first_line_that_disagree_decide_nothing():
    assert read_decision("approve", "reject\n").problem == "conflict"
    agreed = read_decision("reject", "reject: Off topic\n")
    assert (agreed.decision, agreed.reason) == ("reject", "Off topic")


def test_only_the_first_written_line_counts_and_a_signature_ends_the_reply():
    assert read_decision("Re: x", "Thanks, I will look\napprove\n").decision is None
    assert first_written_line("-- \nFac\napprove\n") is None
    assert first_written_line("\u200b\n\u00a0\napprove\n") == "approve"


def test_an_html_only_reply_with_an_unquoted_copy_below_an_attribution_decides_nothing(
        notice_text):
    body = "On Mon, 23 Nov 2026, Peace workshop wrote:\n" + notice_text
    assert read_decision("Re: x", body).decision is None


def test_words_that_only_begin_like_decisions_are_not_decisions():
    for line in ("approvers meet today", "banana", "rejecting is hard", "disapprove"):
        assert read_line(line) is None, line
