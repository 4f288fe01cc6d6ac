"""Which language a text is in, when nobody said: py3langid, among the site's languages.

`detect(text, candidates)` answers a language code only when the text is
long enough and the model is confident, else None: a wrong guess would send
a text to be "translated" into the language it is already in, or keep it
from a translation it needs. `declared(message)` reads a message's own
Content-Language (RFC 3282). The model is loaded once per process, on
first use. Reads and writes nothing.
"""

from __future__ import annotations

import functools
import logging
import re

log = logging.getLogger(__name__)

MIN_LETTERS = 24
CONFIDENCE = 0.95
_CODE = re.compile(r"^[a-z]{2,3}$")


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE, norm_probs=True)


def detect(text: str, candidates) -> str | None:
    """The language of `text` among `candidates`, or None when unsure."""
    candidates = sorted({c for c in candidates if _CODE.match(c or "")})
    if len(candidates) < 2 or sum(ch.isalpha() for ch in text or "") < MIN_LETTERS:
        return None
    identifier = _identifier()
    try:
        identifier.set_languages(candidates)
        language, confidence = identifier.classify(text[:4000])
    except Exception:  # a language the model does not know, odd input: no guess
        log.exception("language detection failed")
        return None
    return language if confidence >= CONFIDENCE else None


def declared(message) -> str:
    """The primary language a message declares (Content-Language), or ''."""
    value = str(message.get("Content-Language", "") or "") if message is not None else ""
    first = value.split(",")[0].strip().lower().split("-")[0]
    return first if _CODE.match(first) else ""
