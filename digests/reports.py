"""Reading an initiative report: free-form mail into title, text and fields.

Pure functions over strings. The subject is the title (a `Title:` line may say
it instead); the body gives a few lines, with optional `Link:`, `Region:`,
`Forum:`, `Language:`, `When:` (and `Path:`) lines, written in any of the site's languages (`Lien:`, `Región:`,
`Idioma:`, `Quando:`...), with or without accents or bold stars. Only what
the person wrote is read (the reply reader, listserv/mail/replies.py, with
closing courtesies): quoted replies, reply headers, signatures, phone
sign-offs ("Sent from my iPhone"), an opening greeting and a closing
"Thanks, Ana" are not part of the report.
When no `Link:` line is given, the first web address in the text is the
link; when no `Language:` line is given, the language is guessed from
common words, else left to the caller. Reads and writes nothing.
"""

from __future__ import annotations

import re

from listserv.intake.commands import fold, top_lines
from listserv.mail.headers import clean_header_value

MAX_TITLE = 200
MAX_TEXT = 5000
MAX_FIELD = 120
REF = re.compile(r"\bINIT-(\d{1,9})\b", re.IGNORECASE)
URL = re.compile(r"https?://[^\s<>\"'()\[\]{}]{3,500}", re.IGNORECASE)
_FIELD_LINE = re.compile(r"^[*_\s]*([^\W\d_][^\W\d_ ]{1,20})[*_\s]*[:：]\s*(.*)$")
_PREFIX = re.compile(r"^\s*((re|aw|sv|fwd?|tr|rv|enc|r)\s*:\s*)+", re.IGNORECASE)

FIELD_WORDS = {
    "link": "link url lien enlace ligacao web website site sitio",
    "region": "region regiao pays pais country lieu lugar place",
    "forum": "forum foro",
    "language": "language lang langue idioma lingua",
    "when": "when date quand cuando quando fecha data",
    "path": "path chemin camino caminho",
    "title": "title titre titulo",
}
FIELDS = {word: name for name, words in FIELD_WORDS.items() for word in words.split()}

LANGUAGE_NAMES = {
    "en": "en english anglais ingles",
    "fr": "fr french francais frances",
    "es": "es spanish espagnol espanol espanhol castellano",
    "pt": "pt portuguese portugais portugues",
}
PATH_WORDS = {"them": "thematic", "tema": "thematic", "geo": "geocultural",
              "socio": "socioprofessional"}
STOPWORDS = {
    "en": "the and of to in for with is are we our this that from will",
    "fr": "le la les des et est pour dans avec une nous sur du au aux sont",
    "es": "el los las del y para con una en por es nuestro que se como",
    "pt": "os as do da dos das e para com uma em por nosso nao sao como",
}
_STOP = {lang: frozenset(words.split()) for lang, words in STOPWORDS.items()}


def clean_title(subject: str) -> str:
    """The subject without reply prefixes and our [INIT-42] tag, on one line."""
    title = REF.sub("", clean_header_value(subject, 400))
    title = re.sub(r"\[\s*\]", "", title)
    title = _PREFIX.sub("", title)
    return " ".join(title.split())[:MAX_TITLE].strip(" -:")


def language_of(value: str, languages: tuple[str, ...]) -> str:
    """The code for a language named in a `Language:` line, or ''."""
    folded = fold(value).strip(" .")
    for code, names in LANGUAGE_NAMES.items():
        if code in languages and folded.split()[:1] and folded.split()[0] in names.split():
            return code
    return folded if folded in languages else ""


def guess_language(text: str, languages: tuple[str, ...]) -> str:
    """The site language whose common words the text uses most (at least
    three of them), or ''."""
    words = re.findall(r"[a-z]+", fold(text)[:4000])
    scores = {lang: sum(1 for word in words if word in _STOP[lang])
              for lang in languages if lang in _STOP}
    if not scores:
        return ""
    best = max(scores, key=scores.get)
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] >= 3 and (len(ranked) == 1 or ranked[0] > ranked[1]):
        return best
    return ""


def path_of(value: str) -> str:
    folded = fold(value).strip()
    for prefix, path in PATH_WORDS.items():
        if folded.startswith(prefix):
            return path
    return ""


def first_url(text: str) -> str:
    match = URL.search(text)
    return match.group(0).rstrip(".,;:!?") if match else ""


def read_report(subject: str, body: str, languages: tuple[str, ...]) -> dict:
    """The fields of a report: title, text, link, region, forum (as written),
    language ('' when unknown), when, path ('' when not said)."""
    fields = {"link": "", "region": "", "forum": "", "language": "", "when": "", "path": "",
              "title": ""}
    kept = []
    for line in top_lines(body, closing=True):
        match = _FIELD_LINE.match(line)
        name = FIELDS.get(fold(match.group(1))) if match else None
        if name and not fields[name]:
            fields[name] = clean_header_value(match.group(2), MAX_FIELD).strip(" *_")
            continue
        kept.append(line)
    text = "\n".join(kept)[:MAX_TEXT].strip()
    title = fields["title"][:MAX_TITLE] or clean_title(subject) \
        or clean_header_value(text.split("\n")[0], 100)
    link = first_url(fields["link"]) or first_url(text)
    language = language_of(fields["language"], languages) if fields["language"] else ""
    return {
        "title": title,
        "title_line": fields["title"][:MAX_TITLE],
        "text": text,
        "link": link if len(link) <= 500 else "",
        "region": fields["region"],
        "forum": fields["forum"],
        "language": language or guess_language(f"{title}\n{text}", languages),
        "when": fields["when"],
        "path": path_of(fields["path"]),
    }


def mentioned_ref(subject: str) -> int | None:
    """The initiative a subject names ('Re: [INIT-42] ...'), or None."""
    match = REF.search(subject or "")
    return int(match.group(1)) if match else None
