"""Leaving in one step (the mail an unsubscribe button sends) and rejoining
in one reply, through `listserv serve`."""

from __future__ import annotations

import json
import re

from helpers import listserv, make_site, running_server, send_mail, wait_until

POST = ("From: Ana <ana@example.org>\nTo: peace@lists.example.org\nSubject: Wells\n"
        "Message-ID: <wells-1@example.org>\n\nTwo new wells.\n")


def forum_with_ben(folder) -> None:
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--no-charter", site=folder)
    listserv("member", "add", "peace", "ana@example.org", "--preconfirmed", site=folder)
    listserv("member", "add", "peace", "ben@example.net", "--preconfirmed", "--language", "fr",
             "--mode", "digest", site=folder)


def addresses(folder) -> list[str]:
    return [m["address"] for m in json.loads(
        listserv("member", "list", "peace", "--json", site=folder).stdout)]


def goodbye(sink, address: str):
    wait_until(lambda: any("quitté" in str(m["Subject"]) for m in sink.messages_to(address)),
               20, "the goodbye")
    return [m for m in sink.messages_to(address) if "quitté" in str(m["Subject"])][-1]


def rejoin_by_reply(server, sink, folder, message) -> None:
    rejoin = str(message["Reply-To"])
    assert rejoin.startswith("peace-confirm+") and rejoin in message.get_content()
    send_mail(server.port, "ben@example.net", [rejoin],
              f"From: ben@example.net\nTo: {rejoin}\nSubject: Re: bye\n\nOops.\n")
    wait_until(lambda: "ben@example.net" in addresses(folder), 20, "ben back")
    (ben,) = [m for m in json.loads(listserv("member", "list", "peace", "--json",
                                             site=folder).stdout)
              if m["address"] == "ben@example.net"]
    assert (ben["mode"], ben["language"]) == ("digest", "fr")  # as he was


def test_one_mail_to_the_personal_mailto_leaves_and_one_reply_rejoins(tmp_path, sink):
    folder = make_site(tmp_path, sink, web_url="https://lists.example.org")
    forum_with_ben(folder)
    listserv("member", "add", "peace", "cleo@example.org", "--preconfirmed", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        (copy,) = sink.wait_for_recipient("cleo@example.org")
        assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        mailto = re.search(r"<mailto:([^>]+)>", copy["List-Unsubscribe"]).group(1)
        assert mailto.startswith("peace-leave+")
        send_mail(server.port, "cleo@example.org", [mailto],  # what a mail client sends
                  f"From: cleo@example.org\nTo: {mailto}\nSubject: unsubscribe\n\n")
        wait_until(lambda: "cleo@example.org" not in addresses(folder), 20, "cleo gone")
        wait_until(lambda: len(sink.messages_to("cleo@example.org")) >= 2, 20, "goodbye")
        bye = sink.messages_to("cleo@example.org")[-1]
        assert "You have left" in str(bye["Subject"])
        assert str(bye["Reply-To"]).startswith("peace-confirm+")
    assert addresses(folder) == ["ana@example.org", "ben@example.net"]


def test_a_plain_leave_from_the_members_own_address_leaves_at_once(tmp_path, sink):
    folder = make_site(tmp_path, sink)  # no [web] url: identical copies, batching stays
    forum_with_ben(folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        (copy,) = sink.wait_for_recipient("ana@example.org")
        assert copy["List-Unsubscribe"] == "<mailto:peace-leave@lists.example.org>"
        send_mail(server.port, "mallory@example.net", ["peace-leave@lists.example.org"],
                  "From: ben@example.net\nSubject: unsubscribe\n\n")  # forged From
        wait_until(lambda: any("confirm" in str(m["Subject"]).lower() or "confirm" in
                               m.get_content().lower()
                               for m in sink.messages_to("ben@example.net")), 20,
                   "a confirmation request, not a removal")
        assert "ben@example.net" in addresses(folder)
        send_mail(server.port, "ben@example.net", ["peace-leave@lists.example.org"],
                  "From: Ben <ben@example.net>\nSubject: unsubscribe\n\n")
        wait_until(lambda: "ben@example.net" not in addresses(folder), 20, "ben gone")
        rejoin_by_reply(server, sink, folder, goodbye(sink, "ben@example.net"))


def test_the_web_url_must_be_https_except_on_the_machine_itself(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    config = folder / "listserv.toml"
    text = config.read_text()
    config.write_text(text.replace('url = ""', 'url = "http://lists.example.org"'))
    result = listserv("dkim", "show", site=folder, check=False)  # reads the settings
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "[web] url" in line and "must be https" in line
    config.write_text(text.replace('url = ""', 'url = "http://127.0.0.1:8080"'))
    assert listserv("dkim", "show", site=folder).returncode == 0
