"""Replies as real mail clients write them, in English, French, Spanish and Portuguese.

One place for the shapes every reply path is tested with (commands, decisions,
initiative corrections, translation sheets). `reply_mail(client, language,
written, original, ...)` gives the bytes a client sends when someone writes
`written` in reply to the `original` message (as the sink caught it): its
attribution line in the client's words for that language, its quoting (or
its unquoted copy under a header block), its transfer encoding and its
sign-off. Every shape carries the whole original, so the quoted part holds
the original's tokens, commands and numbers.
"""

from __future__ import annotations

import base64
import email.header
import email.utils
import html
import quopri
import textwrap
import uuid

LANGUAGES = ("en", "fr", "es", "pt")
CLIENTS = (
    "gmail-web",          # top-posted, attribution wrapped over two lines, text + HTML
    "gmail-html",         # HTML only, <blockquote class="gmail_quote">, signature block
    "outlook-desktop",    # top-posted, "-----Original Message-----" + header block, QP
    "outlook-web",        # top-posted, underscores + header block, original unquoted, text + HTML
    "outlook-mobile-html",  # HTML only, "Get Outlook for Android", <hr> + header block
    "apple-mail",         # top-posted, the attribution quoted too
    "iphone",             # top-posted, "Sent from my iPhone", QP
    "android-gmail",      # top-posted, base64 body
    "thunderbird",        # bottom-posted below the quote, format=flowed, "-- " signature
    "yahoo",              # top-posted, original indented but not quoted, Yahoo sign-off
    "inline",             # written between two halves of the quoted original
    "qp-soft-breaks",     # top-posted, quoted-printable with soft breaks inside written lines
)
SHAPES = [(client, language) for client in CLIENTS for language in LANGUAGES]

GMAIL = {"en": "On Mon, Nov 23, 2026 at 9:00\u202fAM {who} wrote:",
         "fr": "Le lun. 23 nov. 2026 à 09:00, {who} a écrit :",
         "es": "El lun, 23 nov 2026 a las 9:00, {name} (<{addr}>) escribió:",
         "pt": "Em seg., 23 de nov. de 2026 às 09:00, {who} escreveu:"}
APPLE = {"en": "On 23 Nov 2026, at 09:00, {who} wrote:",
         "fr": "Le 23 nov. 2026 à 09:00, {who} a écrit :",
         "es": "El 23 nov 2026, a las 9:00, {who} escribió:",
         "pt": "Em 23 de nov. de 2026, à(s) 09:00, {who} escreveu:"}
IPHONE = {"en": "Sent from my iPhone", "fr": "Envoyé de mon iPhone",
          "es": "Enviado desde mi iPhone", "pt": "Enviado do meu iPhone"}
ANDROID = {"en": "On Mon, 23 Nov 2026, 09:00 {who} wrote:",
           "fr": "Le lun. 23 nov. 2026, 09:00, {who} a écrit :",
           "es": "El lun., 23 nov. 2026 9:00, {who} escribió:",
           "pt": "Em seg., 23 de nov. de 2026 09:00, {who} escreveu:"}
THUNDERBIRD = {"en": "On 23/11/2026 09:00, {name} wrote:",
               "fr": "Le 23/11/2026 à 09:00, {name} a écrit :",
               "es": "El 23/11/26 a las 9:00, {name} escribió:",
               "pt": "Em 23/11/2026 09:00, {name} escreveu:"}
YAHOO = {"en": "On Monday, November 23, 2026, 09:00:00 AM GMT, {who} wrote:",
         "fr": "Le lundi 23 novembre 2026, 09:00:00 UTC, {who} a écrit :",
         "es": "El lunes, 23 de noviembre de 2026, 09:00:00 UTC, {who} escribió:",
         "pt": "Em segunda-feira, 23 de novembro de 2026 09:00:00 UTC, {who} escreveu:"}
YAHOO_SENT = {"en": "Sent from Yahoo Mail on Android", "fr": "Envoyé de Yahoo Mail pour Android",
              "es": "Enviado desde Yahoo Mail con Android",
              "pt": "Enviado do Yahoo Mail para Android"}
OUTLOOK_MOBILE = {"en": "Get Outlook for Android", "fr": "Obtenir Outlook pour Android",
                  "es": "Obtener Outlook para Android", "pt": "Obter o Outlook para Android"}
OUTLOOK_BANNER = {"en": "-----Original Message-----", "fr": "-----Message d'origine-----",
                  "es": "-----Mensaje original-----", "pt": "-----Mensagem original-----"}
OUTLOOK_HEADERS = {
    "en": ("From: {who}", "Sent: Monday, November 23, 2026 9:00 AM", "To: {to}",
           "Subject: {subject}"),
    "fr": ("De : {who}", "Envoyé : lundi 23 novembre 2026 09:00", "À : {to}",
           "Objet : {subject}"),
    "es": ("De: {who}", "Enviado: lunes, 23 de noviembre de 2026 9:00", "Para: {to}",
           "Asunto: {subject}"),
    "pt": ("De: {who}", "Enviado: segunda-feira, 23 de novembro de 2026 09:00", "Para: {to}",
           "Assunto: {subject}")}
REPLY_PREFIX = {"outlook": {"en": "RE: ", "fr": "RE : ", "es": "RE: ", "pt": "RE: "},
                "other": {"en": "Re: ", "fr": "Re: ", "es": "Re: ", "pt": "Re: "}}


def header(value: str) -> str:
    """A header value as clients send it: RFC 2047 words when not ASCII."""
    return value if value.isascii() else email.header.Header(value, "utf-8").encode()


def mailbox(value: str) -> str:
    name, addr = email.utils.parseaddr(value)
    return email.utils.formataddr((name, addr), charset="utf-8") if name else addr


def quoted(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


def text_of(message) -> str:
    """The plain text of a caught message, with LF line ends."""
    part = message.get_body(preferencelist=("plain",)) if message.is_multipart() else message
    return part.get_content().replace("\r\n", "\n")


def flow(text: str, width: int = 72) -> str:
    """Text as format=flowed (RFC 3676): long lines broken after a space."""
    out = []
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        prefix = line[:len(line) - len(stripped)]
        if prefix:
            prefix += " "
            stripped = stripped[1:] if stripped.startswith(" ") else stripped
        elif stripped.startswith((" ", "From ")):
            stripped = " " + stripped  # space-stuffing
        if stripped == "-- " or len(prefix + stripped) <= width:
            out.append(prefix + stripped if stripped == "-- " else (prefix + stripped).rstrip())
            continue
        pieces = textwrap.wrap(stripped, width - len(prefix), break_long_words=False,
                               break_on_hyphens=False, drop_whitespace=True)
        out.extend(prefix + piece + " " for piece in pieces[:-1])
        out.append(prefix + pieces[-1])
    return "\n".join(out)


def qp(text: str, soft_breaks: bool = False) -> str:
    encoded = quopri.encodestring(text.replace("\n", "\r\n").encode("utf-8")).decode("ascii")
    encoded = encoded.replace("\r\n", "\n")
    if not soft_breaks:
        return encoded
    lines = []
    for line in encoded.split("\n"):
        cut = 6
        while cut < len(line) and "=" in line[cut - 2:cut]:
            cut += 1  # never inside an =XX escape
        lines.append(line[:cut] + "=\n" + line[cut:] if len(line) > cut + 2 else line)
    return "\n".join(lines)


def _html(written: str) -> str:
    return "<br>".join(html.escape(line) for line in written.split("\n"))


def _plain_part(text: str, encoding: str = "8bit", flowed: bool = False,
                soft_breaks: bool = False) -> str:
    kind = "text/plain; charset=utf-8" + ("; format=flowed; delsp=no" if flowed else "")
    if encoding == "quoted-printable":
        body = qp(text, soft_breaks)
    elif encoding == "base64":
        body = base64.encodebytes(text.encode("utf-8")).decode("ascii")
    else:
        body = flow(text) if flowed else text
    return f"Content-Type: {kind}\nContent-Transfer-Encoding: {encoding}\n\n{body}\n"


def _html_part(markup: str) -> str:
    return ("Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: "
            f"quoted-printable\n\n{qp(markup)}\n")


def _alternative(plain: str, markup: str) -> str:
    boundary = "alt-" + uuid.uuid4().hex[:12]
    return (f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
            f"--{boundary}\n{plain}\n--{boundary}\n{_html_part(markup)}\n--{boundary}--\n")


def reply_mail(client: str, language: str, written: str, original, *, sender: str,
               to: str | None = None, subject: str | None = None) -> bytes:
    """The bytes `client` (in `language`) sends when `sender` writes `written` in
    reply to `original` (an email.message.Message as caught by the sink)."""
    who = str(original["From"])
    name, addr = email.utils.parseaddr(who)
    name = name or addr
    text = text_of(original).rstrip("\n")
    orig_subject = str(original["Subject"])
    to = to or email.utils.parseaddr(str(original.get("Reply-To") or who))[1]
    values = {"who": who, "name": name, "addr": addr, "to": email.utils.parseaddr(sender)[1],
              "subject": orig_subject}
    headers = [line.format(**values) for line in OUTLOOK_HEADERS[language]]
    if client == "gmail-web":
        attribution = "\n".join(textwrap.wrap(GMAIL[language].format(**values), 76,
                                              break_long_words=False, break_on_hyphens=False))
        plain = f"{written}\n\n{attribution}\n\n{quoted(text)}\n"
        markup = (f'<div dir="ltr">{_html(written)}</div><br><div class="gmail_quote">'
                  f'<div dir="ltr" class="gmail_attr">'
                  f'{html.escape(GMAIL[language].format(**values))}<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">'
                  f"{_html(text)}</blockquote></div>")
        body = _alternative(_plain_part(plain, "quoted-printable"), markup)
    elif client == "gmail-html":
        markup = (f'<div dir="ltr">{_html(written)}<br clear="all"><div><br></div><span class='
                  f'"gmail_signature_prefix">-- </span><br><div dir="ltr" class="gmail_signature">'
                  f"{html.escape(name)}<br>+1 555 0100</div></div><br>"
                  f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">'
                  f"{html.escape(GMAIL[language].format(**values))}<br></div>"
                  f'<blockquote class="gmail_quote">{_html(text)}</blockquote></div>')
        body = _html_part(markup)
    elif client == "outlook-desktop":
        plain = (f"{written}\n\n{OUTLOOK_BANNER[language]}\n" + "\n".join(headers)
                 + f"\n\n{text}\n")
        body = _plain_part(plain, "quoted-printable")
    elif client == "outlook-web":
        plain = (f"{written}\n\n________________________________\n" + "\n".join(headers)
                 + f"\n\n{text}\n")
        markup = (f'<html><head><style>p {{margin:0}}</style></head><body><div dir="ltr">'
                  f'{_html(written)}</div><div id="appendonsend"></div>'
                  f'<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg">'
                  + "<br>".join(f"<b>{html.escape(h.split(':', 1)[0])}:</b>"
                                f"{html.escape(h.split(':', 1)[1])}" for h in headers)
                  + f"</div><div>{_html(text)}</div></body></html>")
        body = _alternative(_plain_part(plain, "quoted-printable"), markup)
    elif client == "outlook-mobile-html":
        markup = (f'<html><body><div dir="auto">{_html(written)}</div><div dir="auto"><br>'
                  f'</div><div dir="auto">{html.escape(OUTLOOK_MOBILE[language])}</div>'
                  f'<hr style="display:inline-block;width:98%"><div id="divRplyFwdMsg">'
                  + "<br>".join(f"<b>{html.escape(h.split(':', 1)[0])}:</b>"
                                f"{html.escape(h.split(':', 1)[1])}" for h in headers)
                  + f"</div><div>{_html(text)}</div></body></html>")
        body = _html_part(markup)
    elif client == "apple-mail":
        plain = f"{written}\n\n> {APPLE[language].format(**values)}\n>\n{quoted(text)}\n"
        body = _plain_part(plain)
    elif client == "iphone":
        plain = (f"{written}\n\n{IPHONE[language]}\n\n> {APPLE[language].format(**values)}\n"
                 f">\n{quoted(text)}\n")
        body = _plain_part(plain, "quoted-printable")
    elif client == "android-gmail":
        plain = f"{written}\n\n{ANDROID[language].format(**values)}\n\n{quoted(text)}\n"
        body = _plain_part(plain, "base64")
    elif client == "thunderbird":
        plain = (f"{THUNDERBIRD[language].format(**values)}\n{quoted(text)}\n\n{written}\n\n"
                 f"-- \n{email.utils.parseaddr(sender)[0] or 'A'}\n")
        body = _plain_part(plain, flowed=True)
    elif client == "yahoo":
        indented = "\n".join("    " + line for line in text.splitlines())
        plain = (f"{written}\n\n{YAHOO_SENT[language]}\n\n  {YAHOO[language].format(**values)}"
                 f"\n\n{indented}\n")
        markup = (f'<div class="ydp-body"><div>{_html(written)}</div><br><div>'
                  f'{html.escape(YAHOO_SENT[language])}</div><div class="yahoo_quoted">'
                  f"<div>{html.escape(YAHOO[language].format(**values))}</div>"
                  f"<div>{_html(text)}</div></div></div>")
        body = _alternative(_plain_part(plain, "quoted-printable"), markup)
    elif client == "inline":
        lines = text.splitlines()
        half = len(lines) // 2
        plain = (f"{THUNDERBIRD[language].format(**values)}\n{quoted(chr(10).join(lines[:half]))}"
                 f"\n\n{written}\n\n{quoted(chr(10).join(lines[half:]))}\n")
        body = _plain_part(plain)
    elif client == "qp-soft-breaks":
        plain = f"{written}\n\n{GMAIL[language].format(**values)}\n\n{quoted(text)}\n"
        body = _plain_part(plain, "quoted-printable", soft_breaks=True)
    else:
        raise AssertionError(client)
    prefix = REPLY_PREFIX["outlook" if client.startswith("outlook") else "other"][language]
    message_id = f"<{uuid.uuid4().hex}@example.org>"
    subject = header(subject or prefix + orig_subject)
    head = (f"From: {mailbox(sender)}\nTo: {to}\nSubject: {subject}\n"
            f"Date: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: {message_id}\n"
            f"In-Reply-To: {original['Message-ID']}\nReferences: {original['Message-ID']}\n"
            f"MIME-Version: 1.0\n")
    return (head + body).replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
