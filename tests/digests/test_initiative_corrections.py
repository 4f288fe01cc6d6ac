"""Corrections of initiatives, written as replies in every client's shape, through
`listserv serve`: field lines merge and keep the text, new text replaces it, and
signatures, phone sign-offs and closing courtesies are never part of it."""

from __future__ import annotations

from digestkit import query, report
from helpers import running_server, send_mail
from replyshapes import SHAPES, reply_mail, text_of

WHATSNEW = "whatsnew@lists.example.org"
TEXTS = {"en": "We opened a seed bank with the families of the valley and we share the seeds "
               "for the next season.",
         "fr": "Nous avons ouvert une banque de semences avec les familles de la vallée et nous "
               "partageons les graines pour la saison.",
         "es": "Abrimos un banco de semillas con las familias del valle y compartimos las "
               "semillas para la próxima temporada.",
         "pt": "Abrimos um banco de sementes com as famílias do vale e partilhamos as sementes "
               "para a próxima estação."}
NEW_TEXTS = {"en": "Now thirty families share the seed bank, and the school of the valley "
                   "joined us in the spring.",
             "fr": "Maintenant trente familles partagent la banque de semences, et l'école de la "
                   "vallée nous a rejoints.",
             "es": "Ahora treinta familias comparten el banco de semillas, y la escuela del valle "
                   "se unió a nosotros.",
             "pt": "Agora trinta famílias partilham o banco de sementes, e a escola do vale "
                   "juntou-se a nós."}
FIELDS = {"en": "Link: {link}\nRegion: {region}", "fr": "Lien : {link}\nRégion : {region}",
          "es": "Enlace: {link}\nRegión: {region}", "pt": "Link: {link}\nRegião: {region}"}
WHEN = {"en": "When: every Saturday", "fr": "Quand : chaque samedi",
        "es": "Cuándo: cada sábado", "pt": "Quando: todos os sábados"}
SIGN_OFF = {"en": "Thanks,\nAna", "fr": "Merci,\nMoussa", "es": "Gracias,\nLucía",
            "pt": "Obrigada,\nJoana"}
GREETING = {"en": "Hello,", "fr": "Bonjour,", "es": "Hola,", "pt": "Olá,"}


def reporter(index: int) -> str:
    return f"reporter{index}@example.org"


def shown(folder, index: int) -> dict:
    (row,) = query(folder, "SELECT text, link, region, happens FROM initiatives WHERE id = ?",
                   [index + 1])
    return dict(zip(("text", "link", "region", "happens"), row))


def test_corrections_merge_in_every_client_shape_and_the_acknowledgement_shows_the_result(
        hub, sink):
    with running_server(hub) as server:
        for index, (_, language) in enumerate(SHAPES):
            send_mail(server.port, reporter(index), [WHATSNEW],
                      report(reporter(index), f"Seed bank {index}",
                             f"{TEXTS[language]}\nLink: https://example.org/old/{index}\n"
                             f"Region: Sahel\n", f"Reporter {index}"))
        acks = [sink.wait_for_recipient(reporter(i), 1, timeout=60)[0]
                for i in range(len(SHAPES))]
        for index, (client, language) in enumerate(SHAPES):  # field lines only
            fields = FIELDS[language].format(link=f"https://example.org/new/{index}",
                                             region="Kayes")
            written = f"{GREETING[language]}\n\n{fields}\n\n{SIGN_OFF[language]}"
            send_mail(server.port, reporter(index), [WHATSNEW],
                      reply_mail(client, language, written, acks[index],
                                 sender=f"Reporter {index} <{reporter(index)}>"))
        updated = [sink.wait_for_recipient(reporter(i), 2, timeout=60)[1]
                   for i in range(len(SHAPES))]
        kept = {index: shown(hub, index) for index in range(len(SHAPES))}
        for index, (client, language) in enumerate(SHAPES):  # new text, and one more field
            written = f"{NEW_TEXTS[language]}\n{WHEN[language]}\n\n{SIGN_OFF[language]}"
            send_mail(server.port, reporter(index), [WHATSNEW],
                      reply_mail(client, language, written, updated[index],
                                 sender=f"Reporter {index} <{reporter(index)}>"))
        replaced = [sink.wait_for_recipient(reporter(i), 3, timeout=60)[2]
                    for i in range(len(SHAPES))]
    wrong = []
    for index, (client, language) in enumerate(SHAPES):
        first, second = kept[index], shown(hub, index)
        expected_first = (TEXTS[language], f"https://example.org/new/{index}", "Kayes", "")
        got_first = (first["text"], first["link"], first["region"], first["happens"] or "")
        expected_second = (NEW_TEXTS[language], f"https://example.org/new/{index}", "Kayes",
                           WHEN[language].split(":", 1)[1].strip())
        got_second = (second["text"], second["link"], second["region"], second["happens"])
        ack = " ".join(text_of(updated[index]).split())
        if got_first != expected_first or got_second != expected_second \
                or TEXTS[language] not in ack or f"https://example.org/new/{index}" not in ack \
                or NEW_TEXTS[language] not in " ".join(text_of(replaced[index]).split()):
            wrong.append((client, language, got_first, got_second))
    assert wrong == []
