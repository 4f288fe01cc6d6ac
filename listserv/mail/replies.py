"""The reply reader: from a message, the text the person wrote.

Every path that reads what people answer by mail uses this: command mail
(commands.py), facilitators' decisions (moderation/words.py), initiative
reports and their corrections (digests/reports.py) and translators' sheets
(relays/sheets.py). `body_of` picks the text: the first text/plain part
(format=flowed joined back into its lines, RFC 3676), else the HTML part
turned into text with its quoted parts marked (reply_html.py). `read_text`
then keeps what the person wrote, top-posted, bottom-posted or written
between the quoted lines, as `Block`s, each with the quoted lines just above
it (a sheet reply names its segment by the quote it answers). Never read:
quoted lines (`>`, `|`); attribution lines ("On ... wrote:", "Le ... a écrit :",
"El ... escribió:", "Em ... escreveu:", "Am ... schrieb ...:", also wrapped
over up to three lines); and nothing below a signature (`-- `), a phone or
webmail sign-off ("Sent from my iPhone", "Envoyé de mon iPhone", "Enviado
desde mi iPhone", "Enviado do meu iPhone", "Get Outlook for Android"...), a
separator ("-----Original Message-----", "-------- Message d'origine
--------", a line of underscores, "Begin forwarded message:"), an Outlook
header block (From:/Sent:, De :/Envoyé :, De:/Enviado:, Von:/Gesendet:) or
an attribution with an unquoted copy of the original below it (Outlook,
Yahoo, phones). With `closing=True`, for paths that expect structured
content, a greeting opening the reply is dropped and a closing courtesy
("Merci, Marie", "Thanks,", "Saludos", "Obrigada") ends it, and so does a
paragraph that opens like a mail server's legal footer ("This e-mail is
confidential...", "Ce message...", "Este mensaje...", "Esta mensagem...").

mail-parser-reply (PyPI) was weighed and not used: it has no Portuguese,
its Spanish attribution pattern misses Gmail's "... escribió:", it keeps
">" lines in bottom-posted and inline replies, and reads any line that
starts with "- " as a signature. Pure functions; reads and writes nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from email.message import Message

from listserv.mail.text import decode_payload
from listserv.mail.reply_html import html_reply_text

MAX_LINES = 5000
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad\u200e\u200f"), None)
_SPACES = dict.fromkeys(map(ord, "\u00a0\u202f\u2007\u2009"), " ")


def fold(text: str) -> str:
    """Lower case without accents, for matching words in any of the languages."""
    text = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in text if not unicodedata.combining(ch))


_ATTRIBUTION_END = re.compile(r"((wrote|writes|a ecrit|escribio|escreveu|ha scritto|schreef|"
                              r"skrev)\s*:|schrieb\b.{0,120}:)\s*$")
_ATTRIBUTION_START = re.compile(r"^(on|le|el|em|am|il|op|the)\s")
_SIGNATURE = re.compile(r"^--\s*$")
_SIGN_OFF = re.compile(
    r"^(sent from|sent with|sent via|sent using|get outlook for|"
    r"envoye de|envoye depuis|envoye avec|envoye a partir d|obtenir outlook pour|"
    r"telecharger outlook pour|enviado desde|enviado con|enviado de|obtener outlook para|"
    r"descargar outlook para|enviado do|enviado a partir d|enviado com|obter o outlook para|"
    r"obtenha o outlook para|baixe o outlook para|von meinem|gesendet von|outlook fur)\b")
_SEPARATOR = re.compile(
    r"^(-{2,}\s*[^\W\d][^-]{2,45}?\s*-{2,}|_{10,}|={10,}|\*{10,}|"
    r"begin forwarded message:?|debut du message reexpedie\s*:?|"
    r"inicio del mensaje reenviado:?|inicio da mensagem reencaminhada:?|"
    r"anfang der weitergeleiteten nachricht:?)$")
_HEADER_FIRST = re.compile(r"^\**(from|de|von|da|van)\**\s*:\s*\**\s*\S")
_HEADER_NEXT = re.compile(r"^\**(sent|date|to|subject|cc|envoye|a|objet|date d'envoi|"
                          r"enviado|enviada|fecha|para|asunto|assunto|data|gesendet|an|"
                          r"betreff|datum|inviato|oggetto)\**\s*:")
_COURTESY = (r"(thanks|thank you|many thanks|thanks a lot|thanks again|thx|cheers|best|"
             r"best wishes|best regards|kind regards|warm regards|warmly|regards|all the best|"
             r"yours|sincerely|yours sincerely|"
             r"merci|merci beaucoup|merci bien|mille mercis|merci encore|cordialement|"
             r"bien cordialement|salutations|sinceres salutations|amicalement|bien a vous|"
             r"a bientot|bonne journee|bises|"
             r"gracias|muchas gracias|mil gracias|saludos|un saludo|saludos cordiales|"
             r"atentamente|cordiales saludos|un abrazo|abrazos|"
             r"obrigado|obrigada|muito obrigado|muito obrigada|abracos|um abraco|beijos|"
             r"atenciosamente|cordialmente|cumprimentos|saudacoes|att|"
             r"danke|vielen dank|viele grusse|mit freundlichen grussen|liebe grusse|gruss)")
_NAME = r"[^\W\d][\w'.-]*"
_COURTESY_LINE = re.compile(rf"^{_COURTESY}\s*[,.!]*\s*(({_NAME})|([,-]\s*{_NAME}(\s+{_NAME})"
                            rf"{{0,2}}))?\s*[.!]*$")
_DISCLAIMER = re.compile(r"^(this (e-?mail|message|communication)|confidential|disclaimer|"
                         r"caution\s*:|ce (message|courriel|courrier)|avertissement|"
                         r"avis de confidentialite|este (mensaje|correo|e-?mail)|"
                         r"aviso (legal|de confidencialidad)|"
                         r"esta mensagem|confidencial|privileged)\b")
_GREETING = re.compile(r"^(hi|hello|hey|dear|good (morning|afternoon|evening)|bonjour|bonsoir|"
                       r"salut|cher|chere|chers|hola|buenos dias|buenas tardes|estimado|"
                       r"estimada|estimados|querido|querida|ola|oi|bom dia|boa tarde|"
                       r"prezado|prezada|caro|cara|hallo|guten tag)\b[^.!?:]{0,40}[,!.]?$")


@dataclass(frozen=True)
class Block:
    """A run of lines the person wrote, and the quoted lines just above it."""

    lines: tuple[str, ...]
    quoted: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(self.lines).strip()


@dataclass(frozen=True)
class Reply:
    """What a reply says, in the order it was written."""

    blocks: tuple[Block, ...] = ()

    @property
    def lines(self) -> list[str]:
        """Every non-empty written line, stripped."""
        return [line.strip() for block in self.blocks for line in block.lines if line.strip()]

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks if block.text)


def unflow(text: str, delsp: bool = False) -> str:
    """format=flowed text (RFC 3676) with its soft line breaks joined again."""
    out: list[str] = []
    paragraph: list | None = None  # [quote depth, text]
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        depth = len(line) - len(stripped)
        if stripped.startswith(" "):
            stripped = stripped[1:]  # space-stuffing
        if paragraph is not None and paragraph[0] == depth:
            paragraph[1] += stripped
        else:
            if paragraph is not None:
                out.append(_quoted_line(*paragraph))
            paragraph = [depth, stripped]
        if stripped.endswith(" ") and stripped != "-- ":
            if delsp:
                paragraph[1] = paragraph[1][:-1]
            continue
        out.append(_quoted_line(*paragraph))
        paragraph = None
    if paragraph is not None:
        out.append(_quoted_line(*paragraph))
    return "\n".join(out)


def _quoted_line(depth: int, text: str) -> str:
    return ("> " * depth + text) if depth else text


def body_of(message: Message, limit: int = 200_000) -> str:
    """The reply's text: its first text/plain part (unflowed), else its HTML as
    text with the quotes marked; '' when it has neither."""
    html = ""
    try:
        for part in _own_parts(message):
            if part.get_content_disposition() == "attachment":
                continue
            kind = part.get_content_type()
            if kind == "text/plain":
                text = decode_payload(part)[:limit].replace("\r\n", "\n").replace("\r", "\n")
                if str(part.get_param("format", "") or "").lower() == "flowed":
                    delsp = str(part.get_param("delsp", "") or "").lower() == "yes"
                    text = unflow(text, delsp)
                return text
            if kind == "text/html" and not html:
                html = decode_payload(part)[:limit]
    except Exception:  # hostile structure: read nothing rather than fail
        return ""
    return html_reply_text(html) if html else ""


def _own_parts(message: Message, depth: int = 0):
    """The leaf parts of a message, not those of messages attached to it
    (a held post attached to a notice is not the reply)."""
    if depth > 20:
        return
    if message.is_multipart():
        if message.get_content_maintype() == "message":
            return
        for part in message.get_payload():
            yield from _own_parts(part, depth + 1)
    elif message.get_content_maintype() != "message":
        yield message


def read_message(message: Message, *, closing: bool = False, limit: int = 200_000) -> Reply:
    """What the person wrote in a message (body_of, then read_text)."""
    return read_text(body_of(message, limit), closing=closing)


def is_quoted(line: str) -> bool:
    return line.startswith((">", "|"))


def read_text(body: str, *, closing: bool = False, max_lines: int = MAX_LINES) -> Reply:
    """What the person wrote in a reply's text (see the module's docstring)."""
    lines = (body.translate(_INVISIBLE).translate(_SPACES).replace("\r\n", "\n")
             .replace("\r", "\n").split("\n")[:max_lines])
    blocks: list[Block] = []
    current: list[str] = []
    quoted: list[str] = []
    written = False  # anything kept so far

    def flush() -> None:
        nonlocal current, quoted
        while current and not current[-1].strip():
            current.pop()
        if current:
            blocks.append(Block(tuple(current), tuple(quoted)))
            quoted = []
        current = []

    index = 0
    while index < len(lines):
        raw = lines[index].rstrip()
        line = raw.strip()
        if is_quoted(line):
            flush()
            quoted.append(line.lstrip(">| ").rstrip())
            index += 1
            continue
        if not line:
            if current:
                current.append("")
            index += 1
            continue
        folded = fold(line)
        if ends_reply(lines, index, line, folded):
            break
        end = attribution_end(lines, index)
        if end is not None:
            flush()
            if not next_is_quoted(lines, end + 1):
                break  # an unquoted copy follows: nothing below it is the reply
            index = end + 1
            continue
        if closing and not written and _GREETING.match(folded) and len(line) <= 60:
            index += 1
            continue
        if closing and written and (not current or not current[-1].strip()) \
                and _DISCLAIMER.match(folded):
            break  # a mail server's legal footer, below the quote or the signature
        if closing and is_courtesy(folded, line, current):
            if written:
                break
            index += 1
            continue
        current.append(raw)
        written = True
        index += 1
    flush()
    return Reply(tuple(blocks))


def ends_reply(lines: list[str], index: int, line: str, folded: str) -> bool:
    """True when nothing from this line on is the person's reply."""
    if _SIGNATURE.match(line) or _SEPARATOR.match(folded):
        return True
    if len(line) <= 80 and _SIGN_OFF.match(folded):
        return True
    return is_header_block(lines, index)


def is_header_block(lines: list[str], index: int) -> bool:
    """An Outlook-style header block starts here: From: then Sent:/Date:/To:..."""
    if not _HEADER_FIRST.match(fold(lines[index].strip())):
        return False
    following = [fold(line.strip()) for line in lines[index + 1:index + 5] if line.strip()]
    return any(_HEADER_NEXT.match(line) for line in following[:2])


def is_courtesy(folded: str, line: str, current: list[str]) -> bool:
    """A closing courtesy: at the start of a paragraph, or naming the writer."""
    if len(line) > 60 or not _COURTESY_LINE.match(folded.strip()):
        return False
    starts_paragraph = not current or not current[-1].strip()
    return starts_paragraph or "," in line


def attribution_end(lines: list[str], start: int) -> int | None:
    """The index of the line that ends an attribution beginning at `start`."""
    first = fold(lines[start].strip())
    if len(first) > 400:
        return None
    if _ATTRIBUTION_END.search(first):
        if _ATTRIBUTION_START.match(first) or "@" in first or re.search(r"\d", first) \
                or next_is_quoted(lines, start + 1):  # "Ana wrote:" above a quote
            return start
        return None
    if not _ATTRIBUTION_START.match(first):
        return None
    for index in range(start + 1, min(start + 3, len(lines))):
        following = fold(lines[index].strip())
        if not following or is_quoted(following):
            return None
        if _ATTRIBUTION_END.search(following):
            return index
    return None


def next_is_quoted(lines: list[str], start: int) -> bool:
    for line in lines[start:start + 5]:
        if line.strip():
            return is_quoted(line.strip())
    return False
