"""The secretariat edits templates: by hand with check/history/rollback, and by email."""

from __future__ import annotations

import email.policy
import smtplib
import time
from email.message import EmailMessage

import pytest
from digestkit import cli_json, text_of, wait_until
from helpers import listserv, running_server, send_mail

TEMPLATES = "templates@lists.example.org"
SECRETARIAT = "secretariat@example.org"


def working(folder, name: str, language: str = "en"):
    return folder / "templates" / language / name


def active(folder, name: str, language: str = "en"):
    return folder / "data" / "templates" / language / name


def test_hand_edits_are_checked_activated_listed_and_rolled_back(hub):
    working(hub, "welcome.txt").write_text("Subject: Hello\n\nFirst version for {{ address }}.\n")
    listserv("templates", "check", site=hub)
    working(hub, "welcome.txt").write_text("Subject: Hello\n\nSecond version.\n")
    result = listserv("templates", "check", site=hub)
    assert "activated en/welcome.txt as version 2" in result.stderr
    assert active(hub, "welcome.txt").read_text() == "Subject: Hello\n\nSecond version.\n"
    rows = {(r["name"], r["language"]): r for r in
            cli_json(listserv("templates", "list", "--json", site=hub))}
    assert rows[("welcome.txt", "en")]["source"] == "site"
    assert rows[("welcome.txt", "fr")]["source"] == "shipped"
    listserv("templates", "rollback", "welcome.txt", site=hub)
    assert "First version" in active(hub, "welcome.txt").read_text()
    assert "First version" in working(hub, "welcome.txt").read_text()
    history = cli_json(listserv("templates", "history", "welcome.txt", "--json", site=hub))
    assert [(h["version"], h["status"], h["via"]) for h in history] == \
        [(3, "active", "rollback"), (2, "superseded", "file"), (1, "superseded", "file")]
    listserv("templates", "rollback", "welcome.txt", "--to", "0", site=hub)
    assert not active(hub, "welcome.txt").exists() and not working(hub, "welcome.txt").exists()
    preview = listserv("templates", "preview", "welcome.txt", "--language", "fr", site=hub)
    assert preview.stdout.startswith("Subject: Bienvenue")


def test_a_broken_edit_is_never_used_the_last_good_version_is_and_everyone_is_told(hub, sink):
    good = "Subject: Help\n\nOUR OWN HELP for {{ forum.title }}.\n"
    working(hub, "help.txt").write_text(good)
    request = ("From: amina@example.org\nTo: water-request@lists.example.org\nSubject: help\n"
               "Message-ID: <help-{n}@example.org>\n\nhelp\n")
    with running_server(hub) as server:
        wait_until(lambda: active(hub, "help.txt").exists(), 20, "the hand edit to be checked")
        working(hub, "help.txt").write_text("Subject: Help\n\n{% for x in %}\n")
        (notice,) = sink.wait_for_recipient(SECRETARIAT, timeout=30)
        send_mail(server.port, "amina@example.org", ["water-request@lists.example.org"],
                  request.format(n=1))
        (answer,) = sink.wait_for_recipient("amina@example.org")
        status = listserv("status", site=hub).stdout
    assert notice["Subject"] == "Template en/help.txt is broken and is not used"
    assert "en/help.txt:3: " in text_of(notice) and "last good version" in text_of(notice)
    assert "OUR OWN HELP for Water commons." in text_of(answer)
    assert "Templates: BROKEN" in status and "en/help.txt:3" in status
    assert active(hub, "help.txt").read_text() == good


def _template_mail(sender: str, attachments: dict[str, str], subject: str = "New welcome"):
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, TEMPLATES, subject
    message["Message-ID"] = f"<tpl-{abs(hash(tuple(attachments)))}@example.org>"
    message.set_content("Here is the new template.\n")
    for name, text in attachments.items():
        message.add_attachment(text.encode(), maintype="text", subtype="plain", filename=name)
    return message.as_bytes(policy=email.policy.SMTP)


def _reply(sender: str, to: str, subject: str) -> str:
    return f"From: {sender}\nTo: {to}\nSubject: Re: {subject}\n\nYes, activate it.\n"


def test_a_template_edit_round_trip_by_email_activates_once(hub, sink):
    welcome = "Subject: Bienvenue, {{ address }}\n\nNOUVEL ACCUEIL du forum {{ forum.title }}.\n"
    with running_server(hub) as server:
        send_mail(server.port, SECRETARIAT, [TEMPLATES],
                  _template_mail(SECRETARIAT, {"fr-welcome.txt": welcome}))
        (check,) = sink.wait_for_recipient(SECRETARIAT)
        confirm = check["Reply-To"]
        assert confirm.startswith("templates+") and confirm.endswith("@lists.example.org")
        assert not active(hub, "welcome.txt", "fr").exists()  # not before the reply
        send_mail(server.port, "zoe@example.net", [confirm],
                  _reply("zoe@example.net", confirm, check["Subject"]))
        time.sleep(1)
        assert not active(hub, "welcome.txt", "fr").exists()  # a stranger's reply: nothing
        send_mail(server.port, SECRETARIAT, [confirm], _reply(SECRETARIAT, confirm,
                                                              check["Subject"]))
        done = sink.wait_for_recipient(SECRETARIAT, 2)[1]
        with pytest.raises(smtplib.SMTPRecipientsRefused) as again:  # refused at RCPT
            send_mail(server.port, SECRETARIAT, [confirm], _reply(SECRETARIAT, confirm,
                                                                  check["Subject"]))
    report = text_of(check)
    assert check["Subject"] == "Template check: ready to activate"
    assert "fr/welcome.txt: passes its check" in report
    assert "Subject: Bienvenue, ana@example.org" in report  # the preview
    assert "NOUVEL ACCUEIL du forum Peace and dialogue." in report
    assert "fr/welcome.txt: activated as version" in text_of(done)
    assert active(hub, "welcome.txt", "fr").read_text() == welcome
    code, text = again.value.recipients[confirm]
    assert code == 550 and b"already used" in text
    assert sink.messages_to("zoe@example.net") == []
    history = cli_json(listserv("templates", "history", "welcome.txt", "--json", site=hub))
    assert [(h["status"], h["via"], h["by"]) for h in history] == \
        [("active", "email", SECRETARIAT)]


def test_a_malicious_template_by_email_is_refused_and_a_strangers_is_ignored(hub, sink):
    evil = "Subject: x\n\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n"
    with running_server(hub) as server:
        send_mail(server.port, "zoe@example.net", [TEMPLATES],
                  _template_mail("zoe@example.net", {"help.txt": "Subject: Hi\n\nHello\n"}))
        send_mail(server.port, SECRETARIAT, [TEMPLATES],
                  _template_mail(SECRETARIAT, {"en/help.txt": evil,
                                               "goodbye.txt": "Subject: Bye\n\nBye\n"}))
        (answer,) = sink.wait_for_recipient(SECRETARIAT)
        time.sleep(0.5)
    report = text_of(answer)
    assert answer["Subject"] == "Template check: not activated"
    assert answer["Reply-To"] is None
    assert "en/help.txt: REFUSED" in report and "en/help.txt:3: '__class__' is private" in report
    assert "Nothing was activated" in report
    assert sink.messages_to("zoe@example.net") == []
    assert not active(hub, "help.txt").exists() and not active(hub, "goodbye.txt").exists()
    history = cli_json(listserv("templates", "history", "help.txt", "--json", site=hub))
    assert [(h["status"], h["by"]) for h in history] == [("refused", SECRETARIAT)]
