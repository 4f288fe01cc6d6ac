"""Deliveries given up tell someone, through `listserv serve` and the CLI.

Members at a domain whose server answers 451 to every RCPT are retried
until `give_up_after` (3 s here), then marked failed. The poster hears of
it once per post (how many, not who), the forum's facilitators get the
addresses and the reason in a summary at most once a day, the secretariat
gets the same for the site's own mail (here a confirmation request), and
`listserv queue` names every recipient of a failed batch row.
"""

from __future__ import annotations

import json

import pytest
from helpers import listserv, make_site, query, running_server, send_mail, wait_until

DOMAIN = "lists.example.org"
DEAD = ["ida@dead.example", "jon@dead.example", "kim@dead.example"]


def post(subject: str, n: int) -> str:
    return (f"From: Ana Lima <ana@example.org>\r\nTo: peace@{DOMAIN}\r\n"
            f"Subject: {subject}\r\nMessage-ID: <giveup-{n}@example.org>\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n{subject}: a few lines.\r\n")


@pytest.fixture
def peace(tmp_path, sink):
    site = make_site(tmp_path, sink)
    config = site / "listserv.toml"
    config.write_text(config.read_text().replace('give_up_after = "5d"', 'give_up_after = "3s"'))
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "members", "--facilitator", "fac@example.org", "--language", "fr",
             site=site)
    for address in ["ana@example.org", "ben@example.org", *DEAD]:
        listserv("member", "add", "peace", address, "--preconfirmed", site=site)
    # dead.example's server never takes mail; everyone else's does.
    sink.handler.answer = lambda rcpt: ("451 4.2.1 Mailbox busy, try later"
                                        if rcpt.endswith("@dead.example") else None)
    return site


def given_up(site) -> int:
    return query(site, "SELECT count(*) FROM deliveries WHERE status = 'failed'")[0][0]


def test_giving_up_tells_the_poster_once_and_the_facilitators_in_a_daily_summary(peace, sink):
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", [f"peace@{DOMAIN}"], post("Wells", 1))
        sink.wait_for_recipient("ben@example.org", 1)
        told = sink.wait_for_recipient("ana@example.org", 2, timeout=30)  # her copy, the word
        summary = sink.wait_for_recipient("fac@example.org", 1, timeout=30)
        # A second post fails for the same members: its poster is told of it too,
        # once; the facilitators' next summary waits for tomorrow.
        send_mail(server.port, "ana@example.org", [f"peace@{DOMAIN}"], post("Pumps", 2))
        wait_until(lambda: query(peace, "SELECT count(*) FROM deliveries WHERE ref LIKE "
                                        "'post:%' AND status = 'failed' AND told_at IS NOT NULL"
                                 )[0][0] == 2, 30, "the second post's failures to be told")
        sink.wait_for(lambda s: len([m for m in s.messages_to("ana@example.org")
                                     if "n'a pas atteint" in m["Subject"]]) == 2, 20,
                      "the word about the second post")
        text = listserv("queue", site=peace).stdout
        report = json.loads(listserv("queue", "--json", site=peace).stdout)
        output = server.output()

    notices = [m for m in sink.messages_to("ana@example.org") if "n'a pas atteint" in m["Subject"]]
    assert sorted(m["Subject"] for m in notices) == [
        "[peace] Votre message « Pumps » n'a pas atteint 3 membres",
        "[peace] Votre message « Wells » n'a pas atteint 3 membres"], told
    body = notices[0].get_content()
    assert not any(address in body for address in DEAD)  # members' addresses stay private
    assert notices[0]["Auto-Submitted"] == "auto-generated"
    assert notices[0]["From"] == f"peace-request@{DOMAIN}"

    (summary,) = sink.messages_to("fac@example.org")  # once, though two posts failed
    assert summary["Subject"] == "[peace] 3 remises de messages abandonnées"
    content = summary.get_content()
    for address in DEAD:
        assert address in content
    assert "« Wells »" in content and "gave up after 3s: 451 4.2.1 Mailbox busy" in content
    assert query(peace, "SELECT count(*) FROM deliveries WHERE ref LIKE 'post:%' AND "
                        "status = 'failed' AND reported_at IS NULL")[0][0] == 1  # tomorrow's

    # `listserv queue` names each recipient of the failed batch rows.
    failed = [row for row in report["failed"] if row["ref"].startswith("post:")]
    assert [sorted(row["recipients"]) for row in failed] == [DEAD, DEAD]
    for address in DEAD:
        assert text.count(address) == 2, text
    assert "+2 more" not in text
    assert "Traceback" not in output


def test_the_secretariat_hears_of_the_sites_own_mail_given_up(peace, sink):
    with running_server(peace) as server:
        # A confirmation request to an address whose server never takes mail.
        listserv("member", "add", "peace", "zed@dead.example", site=peace)
        summary = sink.wait_for_recipient("secretariat@example.org", 1, timeout=30)
        output = server.output()
    (summary,) = summary
    assert summary["Subject"].endswith(": 1 delivery of the site's mail given up")
    content = summary.get_content()
    assert "zed@dead.example" in content and "gave up after 3s" in content
    assert given_up(peace) == 1
    assert not sink.messages_to("fac@example.org")  # not a post: not the facilitators'
    assert "Traceback" not in output
