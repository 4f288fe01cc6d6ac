"""Command mail to FORUM-request, -join and -leave: reading it, doing it, answering once."""

from __future__ import annotations

import pytest
from test_subscriptions import (
    ANA,
    DOMAIN,
    letter,
    queued_to,
    receive,
    send_confirm,
    send_request,
    text_of,
    token_of,
)

from listserv.intake import commands
from listserv.intake.commands import parse_commands, top_lines
from listserv.site import forums, members

REQUEST = f"peace-request@{DOMAIN}"


@pytest.fixture
def forum(site, now):
    return forums.create(site.db, "peace", title="Peace and dialogue", path="thematic", now=now)


@pytest.fixture
def member(site, forum, now):
    return members.add(site.db, "peace", ANA, now=now, languages=site.settings.site.languages)


def tokens(site, purpose: str) -> int:
    return site.db.execute("SELECT count(*) FROM tokens WHERE purpose = ?", [purpose]).fetchone()[0]


# -- reading command mail --------------------------------------------------------------
def test_quoted_text_reply_headers_and_signatures_are_not_read():
    body = ("set mode digest\n\n> unsubscribe\n| unsubscribe\nindex\n-- \nAna\nunsubscribe\n")
    assert top_lines(body) == ["set mode digest", "index"]
    assert top_lines("help\nOn Mon, 23 Nov 2026, Ben <b@example.org> wrote:\nunsubscribe") \
        == ["help"]
    assert top_lines("help\nLe lundi 23 novembre 2026, Ben a écrit :\nunsubscribe") == ["help"]
    assert top_lines("help\n-----Original Message-----\nFrom: Ben\nunsubscribe") == ["help"]
    assert top_lines("help\n________________________________\nDe : Ben\nunsubscribe") == ["help"]


def test_reading_stops_at_end_and_after_a_handful_of_unknown_lines():
    commands_read, _ = parse_commands("", "help\nend\nunsubscribe\n")
    assert [c.name for c in commands_read] == ["help"]
    junk = "".join(f"line {n} of a letter\n" for n in range(6))
    commands_read, unknown = parse_commands("", junk + "unsubscribe\n")
    assert commands_read == [] and len(unknown) == 5


def test_command_words_are_understood_in_french_spanish_and_portuguese():
    cases = {"aide": ("help", "fr"), "ayuda": ("help", "es"), "ajuda": ("help", "pt"),
             "s'abonner": ("subscribe", "fr"), "Désabonner": ("unsubscribe", "fr"),
             "se désabonner": ("unsubscribe", "fr"), "suscribir": ("subscribe", "es"),
             "darme de baja": ("unsubscribe", "es"), "assinar": ("subscribe", "pt"),
             "sair": ("unsubscribe", "pt"), "fim": ("end", "pt"), "Subscribe.": ("subscribe", None)}
    for line, expected in cases.items():
        command = commands.read_command(line)
        assert (command.name, command.language) == expected, line
    assert commands.read_command("Please unsubscribe me") is None


# -- answering -------------------------------------------------------------------------
def test_a_request_without_commands_gets_the_help_in_the_forum_language(site, forum, now):
    send_request(site, forum, "request", letter(REQUEST, subject="Hello",
                                                body="Could you tell me how this works?\n"), now)
    (answer,) = queued_to(site, ANA)
    assert "How to use" in answer["Subject"]
    assert f"peace-join@{DOMAIN}" in text_of(answer)


@pytest.mark.parametrize("word, language_says", [
    ("aide", "Mode d'emploi"), ("ayuda", "Cómo usar"), ("ajuda", "Como usar")])
def test_help_asked_in_another_language_is_answered_in_it(site, forum, now, word,
                                                          language_says):
    send_request(site, forum, "request", letter(REQUEST, subject=word), now)
    (answer,) = queued_to(site, ANA)
    assert language_says in answer["Subject"]


@pytest.mark.parametrize("word, language_says", [
    ("abonner", "CHARTE DE L'ALLIANCE"), ("suscribir", "CARTA DE LA ALIANZA"),
    ("assinar", "CARTA DA ALIANÇA")])
def test_subscribing_in_another_language_confirms_in_it(site, forum, now, word,
                                                        language_says):
    send_request(site, forum, "request", letter(REQUEST, body=f"{word}\n"), now)
    (confirmation,) = queued_to(site, ANA)  # the confirmation request is the answer
    assert language_says in text_of(confirmation)


def test_a_subscribe_command_with_others_sends_results_and_a_confirmation(site, forum, now):
    send_request(site, forum, "request",
                 letter(REQUEST, subject="subscribe digest", body="index\n"), now)
    confirmation, results = queued_to(site, ANA)
    assert "subscribe digest" in text_of(results)
    assert "confirmation request" in text_of(results)
    assert "Nothing can be fetched" in text_of(results)
    send_confirm(site, forum, token_of(confirmation), letter(str(confirmation["Reply-To"])), now)
    assert members.find(site.db, forum["id"], ANA)["mode"] == "digest"


def test_a_bad_language_option_subscribes_nobody_and_says_why(site, forum, now):
    send_request(site, forum, "request", letter(REQUEST, body="subscribe lang=zz\n"), now)
    (results,) = queued_to(site, ANA)
    assert '"zz" is not a possible choice' in text_of(results)
    assert tokens(site, "subscribe") == 0


def test_a_member_sets_mode_and_language_and_is_answered_in_the_new_language(
        site, forum, member, now):
    send_request(site, forum, "request",
                 letter(REQUEST, body="set mode digest\nset language fr\nset profile lowband\n"),
                 now)
    changed = members.find(site.db, forum["id"], ANA)
    assert (changed["mode"], changed["language"], changed["profile"]) == \
        ("digest", "fr", "lowband")
    (results,) = queued_to(site, ANA)
    assert "Résultat" in results["Subject"]
    assert "un recueil des messages" in text_of(results)


def test_settings_words_are_understood_in_french(site, forum, member, now):
    send_request(site, forum, "request", letter(REQUEST, body="régler mode résumé\n"), now)
    assert members.find(site.db, forum["id"], ANA)["mode"] == "digest"


def test_set_by_a_non_member_changes_nothing_and_says_so(site, forum, now):
    send_request(site, forum, "request", letter(REQUEST, body="set mode nomail\n"), now)
    (results,) = queued_to(site, ANA)
    assert "is not a member" in text_of(results)


def test_a_bad_mode_is_refused_with_the_choices(site, forum, member, now):
    send_request(site, forum, "request", letter(REQUEST, body="set mode sometimes\n"), now)
    assert "each, digest, nomail" in text_of(queued_to(site, ANA)[0])
    assert members.find(site.db, forum["id"], ANA)["mode"] == "each"


def test_index_and_get_say_plainly_that_nothing_is_available_yet(site, forum, now):
    send_request(site, forum, "request", letter(REQUEST, body="index\nget WN-17\n"), now)
    text = text_of(queued_to(site, ANA)[0])
    assert "Nothing can be fetched by email" in text
    assert 'reference "WN-17"' in text


def test_help_with_other_commands_comes_as_a_second_message(site, forum, member, now):
    send_request(site, forum, "request", letter(REQUEST, body="help\nset mode digest\n"), now)
    results, help_text = queued_to(site, ANA)
    assert "Results" in results["Subject"] and "How to use" in help_text["Subject"]


# -- what must not happen --------------------------------------------------------------
def test_a_reply_quoting_unsubscribe_below_the_top_text_unsubscribes_nobody(
        site, forum, member, now):
    body = ("Thanks, this is very useful!\n\n"
            "On Mon, 23 Nov 2026 at 08:00, Peace <peace-request@lists.example.org> wrote:\n"
            "> unsubscribe\n> set mode nomail\n")
    send_request(site, forum, "request", letter(REQUEST, subject="Re: results", body=body), now)
    outlook = "Fine.\n\n-----Original Message-----\nFrom: Peace\n\nunsubscribe\n"
    send_request(site, forum, "request", letter(REQUEST, subject="RE: results", body=outlook),
                 now)
    assert tokens(site, "unsubscribe") == 0
    assert members.find(site.db, forum["id"], ANA)["mode"] == "each"
    assert all("How to use" in m["Subject"] for m in queued_to(site, ANA))


def test_unsubscribe_by_command_asks_the_member_to_confirm(site, forum, member, now):
    send_request(site, forum, "request", letter(REQUEST, body="unsubscribe\n-- \nAna\n"), now)
    (confirmation,) = queued_to(site, ANA)
    assert "confirm" in confirmation["Subject"]
    assert members.find(site.db, forum["id"], ANA) is not None
    send_confirm(site, forum, token_of(confirmation), letter(str(confirmation["Reply-To"])), now)
    assert members.find(site.db, forum["id"], ANA) is None


def test_header_injection_in_the_name_and_subject_adds_no_header_to_the_reply(
        site, forum, now):
    evil_name = "=?utf-8?q?Ana=0D=0ABcc=3A_victim=40example=2Enet?="
    evil_subject = "=?utf-8?q?help=0D=0ABcc=3A_victim=40example=2Enet?="
    raw = letter(REQUEST, sender=f"{evil_name} <{ANA}>", subject=evil_subject,
                 body="subscribe\n")
    send_request(site, forum, "request", raw, now)
    for message in queued_to(site, ANA):
        assert message["Bcc"] is None
        assert message.get_all("To") == [ANA]
        assert all("\n" not in str(value) for value in message.values())
    name = site.db.execute("SELECT data FROM tokens").fetchone()[0]
    assert "\\r" not in name and "\\n" not in name


def test_automatic_and_ambiguous_mail_is_never_answered(site, forum, now):
    auto = letter(REQUEST, subject="help", extra="Auto-Submitted: auto-replied\n")
    send_request(site, forum, "request", auto, now)
    bulk = letter(REQUEST, subject="help", extra="Precedence: bulk\n")
    send_request(site, forum, "request", bulk, now)
    two = letter(REQUEST, sender=f"{ANA}, ben@example.org", subject="help")
    send_request(site, forum, "request", two, now)
    ours = letter(REQUEST, sender=f"peace@{DOMAIN}", subject="help")
    send_request(site, forum, "request", ours, now, mail_from=f"peace-bounces@{DOMAIN}")
    assert site.db["deliveries"].count == 0


def test_handling_the_same_message_twice_answers_once(site, forum, now):
    parsed, row_id = receive(site, letter(REQUEST, subject="help"))
    for _ in range(2):
        with site.db.atomic():
            commands.handle_request(site.db, site, forum, "request", parsed, row_id, now)
    assert len(queued_to(site, ANA)) == 1


def test_join_with_a_member_says_already_a_member_and_leave_by_a_stranger_says_not_one(
        site, forum, member, now):
    send_request(site, forum, "join", letter(f"peace-join@{DOMAIN}"), now)
    assert "already a member" in text_of(queued_to(site, ANA)[-1])
    stranger = "ben@example.org"
    send_request(site, forum, "leave", letter(f"peace-leave@{DOMAIN}", sender=stranger), now,
                 mail_from=stranger)
    assert "is not a member" in text_of(queued_to(site, stranger)[-1])
