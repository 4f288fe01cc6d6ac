"""Rendering the copies members receive: headers, prefix, HTML, low bandwidth."""

from __future__ import annotations

import email
import email.policy

import pytest

from listserv.delivery.distribution import prefixed_subject, render_lowband, render_post
from listserv.errors import MessageError

DOMAIN = "lists.example.org"
FORUM = {"id": 1, "slug": "peace", "title": "Peace workshop", "policy": "members",
         "content": "html", "archive_url": ""}


def rendered(raw: str, forum=FORUM, personal=False):
    data = render_post(raw.replace("\n", "\r\n").encode("utf-8"), forum, DOMAIN, personal,
                       "fallback-id@lists.example.org")
    return email.message_from_bytes(data, policy=email.policy.default), data


@pytest.mark.parametrize("subject, expected", [
    ("Water", "[peace] Water"),
    ("[peace] Water", "[peace] Water"),
    ("Re: [peace] Water", "[peace] Re: Water"),
    ("Re: [peace] Re: [peace] Water", "[peace] Re: Water"),
    ("RE: AW: [PEACE] Water", "[peace] Re: Water"),
    ("Fwd: Water", "[peace] Fwd: Water"),
    ("", "[peace]"),
])
def test_the_subject_tag_is_put_in_front_once(subject, expected):
    assert prefixed_subject(subject, "peace") == expected


def test_a_copy_carries_the_list_headers_of_rfc_2369_and_2919():
    message, _ = rendered("From: ana@example.org\nSubject: Water\n\nHello\n")
    assert message["List-Id"] == '"Peace workshop" <peace.lists.example.org>'
    assert message["List-Post"] == "<mailto:peace@lists.example.org>"
    assert message["List-Help"] == "<mailto:peace-request@lists.example.org?subject=help>"
    assert message["List-Subscribe"] == "<mailto:peace-join@lists.example.org>"
    assert message["List-Unsubscribe"] == "<mailto:peace-leave@lists.example.org>"
    assert message["Precedence"] == "list"
    assert message["X-Listserv-Loop"] == "peace@lists.example.org"
    assert message["Subject"] == "[peace] Water"
    assert message["Message-ID"] == "<fallback-id@lists.example.org>"


def test_an_announce_forum_says_list_post_no_and_an_archive_is_linked():
    forum = {**FORUM, "policy": "announce", "archive_url": "https://example.org/a"}
    message, _ = rendered("From: ana@example.org\nSubject: News\n\nHello\n", forum)
    assert message["List-Post"] == "NO"
    assert message["List-Archive"] == "<https://example.org/a>"


def test_personal_copies_leave_list_unsubscribe_to_the_sending_step():
    message, _ = rendered("From: ana@example.org\nSubject: Water\n\nHello\n", personal=True)
    assert message["List-Unsubscribe"] is None


def test_headers_that_could_grant_or_leak_something_are_stripped():
    message, _ = rendered("From: ana@example.org\nSubject: Water\nApproved: secret\n"
                          "Bcc: hidden@example.net\nList-Id: <other.example.net>\n"
                          "Disposition-Notification-To: ana@example.org\n\nHello\n")
    assert message["Approved"] is None
    assert message["Bcc"] is None
    assert message["Disposition-Notification-To"] is None
    assert message.get_all("List-Id") == ['"Peace workshop" <peace.lists.example.org>']


def test_a_non_ascii_subject_is_re_encoded_and_keeps_its_text():
    message, data = rendered("From: ana@example.org\nSubject: =?utf-8?q?=C3=89t=C3=A9?=\n\nx\n")
    assert message["Subject"] == "[peace] Été"
    assert b"\xc3" not in data.split(b"\r\n\r\n")[0]  # headers stay 7-bit


def test_an_encoded_line_break_in_a_subject_cannot_add_a_header():
    raw = ("From: ana@example.org\nSubject: =?utf-8?q?Hi=0D=0ABcc:_victim@example.net?=\n\nx\n")
    message, data = rendered(raw)
    assert message["Bcc"] is None
    assert b"\r\nBcc:" not in data
    assert "\n" not in message["Subject"]


def test_html_is_sanitised_scripts_handlers_and_frames_removed():
    raw = ("From: ana@example.org\nSubject: x\nContent-Type: text/html; charset=utf-8\n\n"
           "<p onclick='steal()'>Hi <b>all</b><script>alert(1)</script>"
           "<iframe src='https://evil.example'></iframe>"
           "<a href='javascript:alert(2)'>x</a><img src='https://track.example/p.gif'></p>\n")
    message, _ = rendered(raw)
    html = message.get_content()
    assert "<b>all</b>" in html
    for bad in ("script", "alert", "onclick", "iframe", "javascript", "track.example"):
        assert bad not in html


def test_a_text_only_forum_turns_html_into_plain_text():
    forum = {**FORUM, "content": "text"}
    raw = ("From: ana@example.org\nSubject: x\nContent-Type: text/html; charset=utf-8\n\n"
           "<p>Hello &amp; welcome<script>alert(1)</script></p>\n")
    message, _ = rendered(raw, forum)
    assert message.get_content_type() == "text/plain"
    assert "Hello & welcome" in message.get_content()
    assert "alert" not in message.get_content()


def test_a_deeply_broken_message_raises_a_reason_not_a_traceback():
    raw = "From: ana@example.org\nSubject: x\nContent-Type: multipart/mixed\n\nno boundary\n"
    try:
        rendered(raw)
    except MessageError as error:
        assert str(error)


def test_lowband_text_is_wrapped_at_72_and_attachments_are_listed_not_sent():
    raw = ("From: Ana <ana@example.org>\nSubject: Seeds\nMIME-Version: 1.0\n"
           "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
           + "word " * 200 + "\n--b\nContent-Type: application/pdf\n"
           "Content-Disposition: attachment; filename=report.pdf\n"
           "Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--b--\n")
    (part,) = render_lowband(raw.replace("\n", "\r\n").encode(), FORUM, DOMAIN, 20000)
    body = part.partition("\n\n")[2]
    assert all(len(line) <= 72 for line in body.splitlines())
    assert "report.pdf" in body and "JVBERi0" not in body
    assert part.startswith("From: Ana <ana@example.org>\nSubject: [peace] Seeds")


def test_lowband_text_over_the_budget_is_split_into_numbered_parts_under_it():
    raw = "From: ana@example.org\nSubject: Long\n\n" + ("A sentence of the report. " * 1500)
    parts = render_lowband(raw.encode(), FORUM, DOMAIN, 4000)
    assert len(parts) > 1
    assert all(len(p.encode()) <= 4000 for p in parts)
    assert f"[part 2 of {len(parts)}]" in parts[1]
    joined = " ".join(p.partition("]\n\n")[2] for p in parts)
    assert joined.count("report") == 1500
