"""The reply reader: what a person wrote, in every client's shape and language."""

from __future__ import annotations

import email
import email.policy

import pytest
from replyshapes import SHAPES, reply_mail

from listserv.mail.message import parse
from listserv.mail.replies import read_message, read_text, unflow
from listserv.mail.reply_html import html_reply_text

ORIGINAL = (
    "From: Peace workshop <peace-request@lists.example.org>\n"
    "To: ana@example.org\nSubject: [peace] Held for your decision: Water\n"
    "Message-ID: <notice-1@lists.example.org>\nReply-To: peace-confirm+0123456789abcdef"
    "0123456789abcdef@lists.example.org\nContent-Type: text/plain; charset=utf-8\n\n"
    "A post from zoe@example.net is held: not a member.\n\n"
    "To decide, reply to this message with one word on the first line:\n"
    "  approve\n  reject REASON\n  discard\n\n"
    "Other commands: set mode each, unsubscribe, help.\n"
    "[1]\n> What's New\n"
    "Link: https://example.org/old\n"
    "The token is 0123456789abcdef0123456789abcdef, valid until 7 December 2026, "
    "after which the post is kept for the secretariat to decide on.\n\n"
    "-- \nPeace workshop\n")

WRITTEN = {
    "en": "reject Off topic here: please post it to the water network, where it belongs "
          "and will be read",
    "fr": "rejeter Hors sujet ici : merci de l'envoyer au réseau de l'eau, où il sera lu "
          "par les bonnes personnes",
    "es": "rechazar Fuera de tema aquí: envíalo a la red del agua, donde lo leerán las "
          "personas adecuadas",
    "pt": "rejeitar Fora do tema aqui: envie para a rede da água, onde será lido pelas "
          "pessoas certas"}
SIGN_OFF = {"en": "Thanks,\nAna", "fr": "Merci,\nMarie", "es": "Gracias,\nLucía",
            "pt": "Obrigada,\nJoana"}


@pytest.fixture(scope="module")
def original():
    return email.message_from_string(ORIGINAL, policy=email.policy.default)


@pytest.mark.parametrize("client, language", SHAPES)
def test_only_the_written_lines_are_read_in_every_client_shape(original, client, language):
    written = f"{WRITTEN[language]}\nset mode digest"
    raw = reply_mail(client, language, written, original, sender="Ana <ana@example.org>")
    reply = read_message(parse(raw).message)
    assert reply.lines == [WRITTEN[language], "set mode digest"], (client, language)


@pytest.mark.parametrize("client, language", SHAPES)
def test_a_closing_courtesy_ends_structured_content(original, client, language):
    written = f"Link: https://example.org/new\nRegion: Kayes\n\n{SIGN_OFF[language]}"
    raw = reply_mail(client, language, written, original, sender="Ana <ana@example.org>")
    reply = read_message(parse(raw).message, closing=True)
    assert reply.lines == ["Link: https://example.org/new", "Region: Kayes"], (client, language)
    plain = read_message(parse(raw).message)
    assert plain.lines[-1] in SIGN_OFF[language].split("\n")  # only structured paths drop it


@pytest.mark.parametrize("client, language", SHAPES)
def test_a_reply_that_writes_nothing_reads_as_nothing(original, client, language):
    raw = reply_mail(client, language, "", original, sender="Ana <ana@example.org>")
    assert read_message(parse(raw).message).lines == [], (client, language)


def test_mobile_sign_offs_and_signatures_end_the_reply():
    for sign_off in ("Sent from my iPhone", "Envoyé de mon iPhone", "Enviado desde mi iPhone",
                     "Enviado do meu iPhone", "Get Outlook for Android",
                     "Obtenir Outlook pour Android", "Von meinem iPhone gesendet", "-- "):
        assert read_text(f"Region: Kayes\n\n{sign_off}\nLink: x\n").lines == ["Region: Kayes"]


def test_german_outlook_blocks_and_attributions_end_the_reply():
    assert read_text("approve\n\nVon: Peace <p@x.org>\nGesendet: Montag, 23. November 2026\n"
                     "An: ana@x.org\nBetreff: x\n\nreject\n").lines == ["approve"]
    assert read_text("Am 23.11.26 um 09:00 schrieb Peace Workshop:\n> help\n\nindex\n"
                     ).lines == ["index"]


def test_greetings_and_courtesies_are_kept_where_they_could_be_content():
    reply = read_text("Hello,\n\n[3]\nMerci !\n\nThanks to everyone who came.\n",
                      closing=True)
    assert reply.lines == ["[3]", "Merci !", "Thanks to everyone who came."]


def test_written_text_between_quotes_keeps_the_quote_it_answers():
    reply = read_text("> [1]\n> What's New\nQuoi de neuf\n>\n> [4]\n> A well\nUn puits\n")
    assert [(b.quoted[-1], b.text) for b in reply.blocks] == [("What's New", "Quoi de neuf"),
                                                               ("A well", "Un puits")]


def test_format_flowed_lines_are_joined_and_space_stuffing_removed():
    assert unflow("set mode \ndigest\n From here\n-- \nAna") == \
        "set mode digest\nFrom here\n-- \nAna"
    assert unflow("one \ntwo\n> quoted \n> more", delsp=True) == "onetwo\n> quotedmore"


def test_html_replies_become_text_with_their_quotes_marked():
    text = html_reply_text("<p>1. first</p><p>- second &amp; third</p><blockquote>approve"
                           "<blockquote>older</blockquote></blockquote><script>x()</script>")
    assert text == "1. first\n- second & third\n> approve\n> > older\n"


def test_hostile_bodies_are_read_without_failing():
    deep = "<blockquote>" * 5000 + "approve"
    assert read_text(html_reply_text(deep)).lines == []
    assert read_text("x" * 300_000 + "\n").lines[0].startswith("x")
    assert read_text("On " + "a " * 1000 + "wrote:\nhelp\n").lines[0].startswith("On")


def test_a_legal_footer_below_the_quote_is_not_structured_content():
    body = ("On 23/11/2026 09:00, W wrote:\n> Link: https://old\n\nRegion: Kayes\n\n"
            "This e-mail and any attachment are confidential.\nIf you received it...\n")
    assert read_text(body, closing=True).lines == ["Region: Kayes"]
    assert read_text("This message is about our well in Kayes.\n", closing=True).lines == \
        ["This message is about our well in Kayes."]  # the opening line is the writer's own


def test_a_message_attached_to_the_reply_is_not_the_reply():
    raw = ("From: fac@example.org\nTo: x@lists.example.org\nSubject: Re: held\n"
           "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
           "Content-Type: text/html; charset=utf-8\n\n<p>reject spam</p>\n--b\n"
           "Content-Type: message/rfc822\n\nFrom: zoe@example.net\nSubject: x\n"
           "Content-Type: text/plain\n\napprove\n--b--\n").replace("\n", "\r\n").encode()
    assert read_message(parse(raw).message).lines == ["reject spam"]
    assert read_text("set mode digest\n\nAna Lima wrote:\n> help\n\nindex\n").lines == \
        ["set mode digest", "index"]
