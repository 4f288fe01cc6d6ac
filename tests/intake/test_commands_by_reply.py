"""Command mail written as a reply, in every client's shape, through `listserv serve`."""

from __future__ import annotations

from helpers import make_site, query, running_server, send_mail
from replyshapes import SHAPES, reply_mail, text_of

from listserv.site import forums, members
from listserv.site.folder import Site

REQUEST = "peace-request@lists.example.org"
DIGEST = {"en": "set mode digest", "fr": "régler mode résumé", "es": "cambiar modo resumen",
          "pt": "mudar modo resumo"}
HELP = {"en": "help", "fr": "aide", "es": "ayuda", "pt": "ajuda"}


def member_of(index: int) -> str:
    return f"reader{index}@example.org"


def test_a_command_written_in_a_reply_is_run_whatever_the_client_and_language(tmp_path, sink,
                                                                            now):
    """The help text quoted in each reply lists every command ("unsubscribe",
    "set mode nomail"...): only the command written is run, above the quote,
    below it (Thunderbird) or between its halves."""
    folder = make_site(tmp_path, sink)
    site = Site(folder)
    forums.create(site.db, "peace", title="Peace workshop", path="thematic", now=now)
    for index, (_, language) in enumerate(SHAPES):
        members.add(site.db, "peace", member_of(index), now=now, language=language,
                    languages=site.settings.site.languages)
    site.db.conn.close()
    with running_server(folder) as server:
        for index, (_, language) in enumerate(SHAPES):
            send_mail(server.port, member_of(index), [REQUEST],
                      f"From: {member_of(index)}\nTo: {REQUEST}\nSubject: {HELP[language]}\n"
                      f"Message-ID: <help{index}@example.org>\n\n{HELP[language]}\n")
        helps = [sink.wait_for_recipient(member_of(i), 1, timeout=60)[0]
                 for i in range(len(SHAPES))]
        for index, (client, language) in enumerate(SHAPES):
            assert "unsubscribe" in text_of(helps[index]) or "desabonner" in \
                text_of(helps[index]).replace("é", "e"), "the quote carries the commands"
            raw = reply_mail(client, language, DIGEST[language], helps[index],
                             sender=f"Reader {index} <{member_of(index)}>")
            send_mail(server.port, member_of(index), [REQUEST], raw)
        answers = [sink.wait_for_recipient(member_of(i), 2, timeout=60)[1]
                   for i in range(len(SHAPES))]
    modes = dict(query(folder, "SELECT address, mode FROM members"))
    wrong = [shape for index, shape in enumerate(SHAPES) if modes[member_of(index)] != "digest"]
    assert wrong == []
    for index, (client, language) in enumerate(SHAPES):  # the results, not the help again
        assert f"> {DIGEST[language]}\n" in text_of(answers[index]), (client, language)
    status = query(folder, "SELECT count(*) FROM members WHERE mode != 'digest'")
    assert status == [(0,)]  # no quoted "unsubscribe" or "set mode nomail" was run
