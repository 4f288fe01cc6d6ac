"""Initiatives reported by SMTP to a running server, reviewed on the command line."""

from __future__ import annotations

import time

from digestkit import cli_json, report, text_of
from helpers import listserv, running_server, send_mail

WHATSNEW = "whatsnew@lists.example.org"
SEEDS = ("Nous avons ouvert une banque de semences avec vingt familles de Kayes.\n"
         "Lien : https://example.org/semences\nForum: sahel\n\n-- \nMoussa\n")


def initiatives(folder, *args) -> list[dict]:
    return cli_json(listserv("initiative", "list", "--json", *args, site=folder))


def test_a_members_report_is_acknowledged_in_their_language_and_goes_to_the_next_issue(
        hub, sink):
    with running_server(hub) as server:
        send_mail(server.port, "moussa@example.org", [WHATSNEW],
                  report("moussa@example.org", "Banque de semences", SEEDS, "Moussa"))
        (ack,) = sink.wait_for_recipient("moussa@example.org")
    assert ack["Subject"] == "[INIT-1] Reçu : Banque de semences"
    assert ack["From"].endswith("<whatsnew@lists.example.org>")
    body = text_of(ack)
    assert "INIT-1" in body and "https://example.org/semences" in body
    assert "prochain bulletin" in body  # accepted: a known ally
    (row,) = initiatives(hub)
    assert (row["status"], row["language"], row["forum"], row["path"], row["link"]) == \
        ("accepted", "fr", "sahel", "geocultural", "https://example.org/semences")
    assert "Moussa" not in row["title"] and "--" not in listserv(
        "initiative", "show", "INIT-1", site=hub).stdout.split("\n\n", 1)[1]


def test_replying_to_the_acknowledgement_updates_the_report_and_nobody_else_can(hub, sink):
    with running_server(hub) as server:
        send_mail(server.port, "moussa@example.org", [WHATSNEW],
                  report("moussa@example.org", "Banque de semences", SEEDS, "Moussa"))
        (ack,) = sink.wait_for_recipient("moussa@example.org")
        correction = (f"From: Moussa <moussa@example.org>\nTo: {WHATSNEW}\n"
                      f"Subject: Re: {ack['Subject']}\nIn-Reply-To: {ack['Message-ID']}\n"
                      f"Message-ID: <fix-1@example.org>\n\n"
                      f"Nous avons ouvert une banque de semences avec trente familles.\n"
                      f"Région : Kayes\n\nLe lundi, whatsnew a écrit :\n> {SEEDS}\n")
        send_mail(server.port, "moussa@example.org", [WHATSNEW], correction)
        updated = sink.wait_for_recipient("moussa@example.org", 2)[1]
        forged = ("From: lucia@example.org\nTo: whatsnew@lists.example.org\n"
                  "Subject: Re: [INIT-1] Banque de semences\nMessage-ID: <forged@example.org>"
                  "\n\nAquí no pasa nada.\n")
        send_mail(server.port, "lucia@example.org", [WHATSNEW], forged)
        sink.wait_for_recipient("lucia@example.org")
    assert updated["Subject"] == "[INIT-1] Mise à jour : Banque de semences"
    rows = {row["ref"]: row for row in initiatives(hub)}
    assert rows["INIT-1"]["region"] == "Kayes"
    shown = listserv("initiative", "show", "INIT-1", "--json", site=hub)
    assert cli_json(shown)["text"] == "Nous avons ouvert une banque de semences avec trente " \
                                      "familles."
    assert rows["INIT-2"]["reporter"] == "lucia@example.org"  # a report of her own


def test_a_strangers_report_waits_for_the_secretariat_who_accepts_or_rejects_it(hub, sink):
    with running_server(hub) as server:
        send_mail(server.port, "zoe@example.net", [WHATSNEW],
                  report("zoe@example.net", "Community kitchen",
                         "We cook for forty families every Sunday in Quito."))
        send_mail(server.port, "spam@example.net", [WHATSNEW],
                  report("spam@example.net", "Cheap watches", "Buy our watches now and save."))
        sink.wait_for_recipient("zoe@example.net")
        notices = sink.wait_for_recipient("secretariat@example.org", 2)
        assert initiatives(hub, "--status", "accepted") == []
        listserv("initiative", "accept", "INIT-1", site=hub)
        listserv("initiative", "reject", "2", "--reason", "Advertising is not an initiative",
                 site=hub)
        rejected = sink.wait_for_recipient("spam@example.net", 2)[1]
    assert "waits for review" in notices[0]["Subject"]
    assert "listserv initiative accept INIT-" in text_of(notices[0])
    assert "secretariat will read it" in text_of(sink.messages_to("zoe@example.net")[0])
    assert "Advertising is not an initiative" in text_of(rejected)
    statuses = {row["ref"]: row["status"] for row in initiatives(hub)}
    assert statuses == {"INIT-1": "accepted", "INIT-2": "rejected"}
    again = listserv("initiative", "accept", "INIT-1", site=hub)
    assert "already accepted" in again.stderr


def test_automatic_mail_to_whatsnew_is_neither_recorded_nor_answered(hub, sink):
    holiday = report("moussa@example.org", "Absent", "I am away until Monday.",
                     extra="Auto-Submitted: auto-replied\n")
    with running_server(hub) as server:
        send_mail(server.port, "moussa@example.org", [WHATSNEW], holiday)
        send_mail(server.port, "", [WHATSNEW], report("mailer-daemon@example.org", "Failure",
                                                      "Undelivered mail"))
        send_mail(server.port, "amina@example.org", [WHATSNEW],
                  report("amina@example.org", "Wells", "New wells in the valley for all."))
        sink.wait_for_recipient("amina@example.org")
        time.sleep(0.5)
    assert sink.messages_to("moussa@example.org") == []
    assert [row["reporter"] for row in initiatives(hub)] == ["amina@example.org"]
