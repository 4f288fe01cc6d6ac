"""Reading a facilitator's decision from a reply, as mail clients lay replies out.

A decision is a word at the start of the reply's subject (after any "Re:",
"AW:", "TR:"...) or of the first line the facilitator wrote in the body:
`approve`, `reject [reason]`, `discard`, `accept-always`, `ban`, or the same
in French, Spanish or Portuguese. Only the reply's own text counts, as the
reply reader (listserv/mail/replies.py) finds it: quoted lines, attribution
lines, an Outlook or phone client's unquoted copy below a separator or a
header block, and the signature are never read, so "reject" typed above a
quoted notice that says "approve" rejects, and a decision written below the
quote (bottom-posting) is read. The first line written is the only one
read: when it is not a decision, there is none. Pure functions; reads and
writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from listserv.mail.replies import fold, read_text

# Folded (lower case, no accents) words -> decision.
WORDS: dict[str, str] = {}
for _decision, _words in {
    "approve": "approve approved accept "
               "approuver approuve accepter valider "
               "aprobar apruebo aprobado aceptar "
               "aprovar aprovo aprovado aceitar",
    "reject": "reject rejected refuse deny decline "
              "rejeter rejete refuser "
              "rechazar rechazo rechazado "
              "rejeitar rejeito rejeitado recusar",
    "discard": "discard delete drop "
               "supprimer jeter ignorer "
               "descartar eliminar borrar "
               "apagar",
    "accept-always": "accept-always always-accept accept_always whitelist "
                     "toujours-accepter accepter-toujours "
                     "aceptar-siempre siempre-aceptar "
                     "aceitar-sempre sempre-aceitar",
    "ban": "ban banish block "
           "bannir interdire bloquer "
           "bloquear vetar prohibir "
           "banir",
}.items():
    for _word in _words.split():
        WORDS[_word] = _decision
# Two words that make one decision: "accept always", "toujours accepter"...
PAIRS = {("accept", "always"), ("always", "accept"), ("accepter", "toujours"),
         ("toujours", "accepter"), ("aceptar", "siempre"), ("siempre", "aceptar"),
         ("aceitar", "sempre"), ("sempre", "aceitar")}

_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|fw|fwd|tr|rv|enc|res|r[ée]f|r[ée]p|rif|wg|antw|odp|r)"
                     r"\.?\s*(\[\d+\]|\(\d+\))?\s*:\s*)+", re.IGNORECASE)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)


@dataclass(frozen=True)
class Reading:
    """What a reply says: a decision and its reason, or why there is none."""

    decision: str | None = None
    reason: str = ""
    problem: str = ""  # "", "none" (no decision found) or "conflict" (two different ones)


def read_line(line: str) -> tuple[str, str] | None:
    """(decision, the rest of the line) when `line` starts with a decision word."""
    words = line.translate(_INVISIBLE).split()
    if not words:
        return None
    if ":" in words[0]:  # "reject:spam"
        head, _, tail = words[0].partition(":")
        words = [head] + ([tail] if tail else []) + words[1:]
    folded = [fold(w).strip(".,;:!?*_\"'()[]") for w in words[:2]]
    if len(folded) == 2 and (folded[0], folded[1]) in PAIRS:
        decision, rest = "accept-always", words[2:]
    elif folded[0] in WORDS:
        decision, rest = WORDS[folded[0]], words[1:]
    else:
        return None
    reason = " ".join(rest).strip(" :-–—.,;")
    return decision, reason[:300]


def subject_text(subject: str) -> str:
    """The subject without the reply and forward prefixes clients add."""
    text = " ".join(subject.split())
    match = _PREFIX.match(text)
    return text[match.end():] if match else text


def first_written_line(body: str) -> str | None:
    """The first line of the reply's own text (above, between or below the
    quote, as the reply reader finds it), or None when it wrote nothing."""
    lines = read_text(body).lines
    return lines[0] if lines else None


def read_decision(subject: str, body: str) -> Reading:
    """The decision a reply carries, from its subject or the first line it wrote."""
    in_subject = read_line(subject_text(subject))
    line = first_written_line(body)
    in_body = read_line(line) if line else None
    if in_subject and in_body and in_subject[0] != in_body[0]:
        return Reading(problem="conflict")
    found = in_body or in_subject
    if found is None:
        return Reading(problem="none")
    reason = (in_body[1] if in_body else "") or (in_subject[1] if in_subject else "")
    return Reading(found[0], reason if found[0] == "reject" else "")
