"""Translators' sheets answered in every client's shape, through a relay's
`listserv serve`: only the numbered segments are taken; sign-offs, signatures,
a closing remark after the last segment and the quoted sheet are not, and
none of them reaches the translation memory."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from helpers import running_server, send_mail
from relaykit import (HUB_DOMAIN, add_recipients, query, receive, signed_publication,
                      whatsnew_payload, write_relay_site)
from replyshapes import SHAPES, reply_mail, text_of

from listserv.site.folder import Site
from relays import sheets, translation

SHEET_LANGUAGES = ("fr", "es", "pt")
TRANSLATORS = {language: f"tr-{language}@example.org" for language in SHEET_LANGUAGES}
PREFIX = {"fr": "En français :", "es": "En español:", "pt": "Em português:"}
REMARK = {"en": "Let me know if anything needs changing.",
          "fr": "Dites-moi s'il faut changer quelque chose.",
          "es": "Avísame si hay que cambiar algo.", "pt": "Diga-me se é preciso mudar algo."}
SIGN_OFF = {"en": "Thanks,\nMary", "fr": "Merci,\nMarie", "es": "Gracias,\nMaría",
            "pt": "Obrigada,\nMaria"}
FIRST = 17


def where(index: int) -> tuple[int, str]:
    """(publication number, sheet language) answered by shape `index`."""
    return FIRST + index // len(SHEET_LANGUAGES), SHEET_LANGUAGES[index % len(SHEET_LANGUAGES)]


def open_segments(sheet) -> dict[int, str]:
    """{number: source} of a sheet, as its text lists them."""
    found = {}
    for number, block in re.findall(r"^\[(\d+)\]\n((?:> .*\n)+)", text_of(sheet), re.MULTILINE):
        lines = [line[2:] for line in block.splitlines() if not line.startswith("> (")]
        found[int(number)] = "\n".join(lines)
    return found


def translated(source: str, language: str) -> str:
    return f"{PREFIX[language]} {source}"


def test_sheets_answered_in_every_client_shape_take_only_the_segments(tmp_path, sink, now):
    folder = write_relay_site(tmp_path / "relay-a", smarthost=sink.port,
                              languages=SHEET_LANGUAGES, translators=TRANSLATORS)
    add_recipients(Site(folder), now, *({"who": f"reader-{language}@example.org",
                                         "profile": "lowband", "language": language}
                                        for language in SHEET_LANGUAGES))
    count = len(SHAPES) // len(SHEET_LANGUAGES)
    with running_server(folder) as server:
        for number in range(FIRST, FIRST + count):
            send_mail(server.port, f"listserv-bounces@{HUB_DOMAIN}",
                      ["relay@relay-a.example.org"],
                      signed_publication(datetime.now(timezone.utc), whatsnew_payload(number)))
        sheets = {}
        for language, translator in TRANSLATORS.items():
            for sheet in sink.wait_for_recipient(translator, count, timeout=90):
                number = int(re.search(r"no\. (\d+)", str(sheet["Subject"])).group(1))
                sheets[number, language] = sheet
        expected = {}
        for index, (client, client_language) in enumerate(SHAPES):
            number, language = where(index)
            sheet = sheets[number, language]
            segments = open_segments(sheet)
            expected[number, language] = {n: translated(source, language)
                                          for n, source in segments.items()}
            written = "\n".join(f"[{n}] {translated(source, language)}"
                                for n, source in segments.items())
            written += f"\n\n{REMARK[client_language]}\n\n{SIGN_OFF[client_language]}"
            send_mail(server.port, TRANSLATORS[language], [sheet["Reply-To"]],
                      reply_mail(client, client_language, written, sheet,
                                 sender=f"Translator <{TRANSLATORS[language]}>"))
        for language, translator in TRANSLATORS.items():
            sink.wait_for_recipient(translator, 2 * count, timeout=90)  # each answered
    rows = query(folder, "SELECT p.key, s.language, s.sheet_number, s.status, s.text FROM "
                         "translation_segments s JOIN relay_publications p ON "
                         "p.id = s.publication_id")
    got: dict[tuple[int, str], dict[int, str]] = {}
    for key, language, number, status, text in rows:
        if status == "translated":
            got.setdefault((int(key.split(":")[1]), language), {})[number] = text
    wrong = [(SHAPES[index], where(index), got.get(where(index)))
             for index in range(len(SHAPES))
             if got.get(where(index)) != expected[where(index)]]
    assert wrong == []
    memory = " ".join(text for (text,) in query(folder, "SELECT text FROM translation_memory"))
    for words in (*REMARK.values(), "Merci", "Marie", "Mary", "iPhone", "Outlook", "Yahoo"):
        assert words not in memory, words
    assert query(folder, "SELECT DISTINCT status FROM translation_sheets") == [("complete",)]


def test_a_segment_sent_back_unchanged_is_not_a_translation_nor_remembered(tmp_path, sink,
                                                                            now):
    site = Site(write_relay_site(tmp_path / "relay-b", smarthost=sink.port, languages=("fr",),
                                 translators={"fr": TRANSLATORS["fr"]}))
    add_recipients(site, now, {"who": "ana@example.org", "profile": "lowband", "language": "fr"})
    receive(site, whatsnew_payload(), now)
    with site.db.atomic():
        translation.prepare_received(site.db, site, now)
    reply = ("Bonjour,\n\n[1] Quoi de neuf n° 17\n[3] a new well  in KAYES!\n"
             "[5] De l'eau pour les écoles\n\nCela vous convient ?\n\nMerci, Marie\n")
    with site.db.atomic():
        outcome = sheets.apply_reply(site.db, site, 1, reply, TRANSLATORS["fr"], now)
    assert (outcome.accepted, outcome.unchanged) == ([1, 5], [3])  # as the sheet numbers them
    assert translation.recall(site.db, "en", "fr", "A new well in Kayes") is None
    assert translation.recall(site.db, "en", "fr", "Water for schools") == \
        "De l'eau pour les écoles"  # the last segment, without the question after it
    status = dict(site.db.execute("SELECT sheet_number, status FROM translation_segments "
                                  "WHERE sheet_number IS NOT NULL"))
    assert status[3] == "open"
