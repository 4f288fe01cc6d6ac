"""DMARC mitigation: posters' policies looked up on a loopback DNS server, and
posts from p=reject domains going out munged (or wrapped) through `serve`."""

from __future__ import annotations

import email
import email.policy
import json
import time

import pytest
from helpers import dkim_verifies, listserv, make_site, running_dns, running_server, send_mail

from listserv.delivery.dmarc import UNKNOWN, Policies, action, organisational_domain, parse_policy
from listserv.site.settings import DnsSection

REJECT = "v=DMARC1; p=reject; rua=mailto:dmarc@reject.example"


def post(author: str, subject: str = "Wells", message_id: str = "w1@example.org") -> str:
    return (f"From: {author}\nTo: peace@lists.example.org\nSubject: {subject}\n"
            f"Date: Mon, 23 Nov 2026 09:00:00 +0000\nMessage-ID: <{message_id}>\n"
            f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n"
            f"Two new wells in the valley.\n")


def policies(nameserver: str, timeout: str = "1s") -> Policies:
    return Policies(DnsSection(nameservers=(nameserver,), timeout=timeout))


def test_a_dmarc_record_is_read_only_when_there_is_exactly_one_that_parses():
    assert parse_policy([REJECT]) == ("reject", "reject")
    assert parse_policy(["v=spf1 -all", "v=DMARC1; p=quarantine; sp=none"]) == \
        ("quarantine", "none")
    assert parse_policy(["v=DMARC1; p=reject", "v=DMARC1; p=none"]) is None  # several
    assert parse_policy(["v=DMARC1; p=bogus"]) is None
    assert parse_policy(["p=reject; v=DMARC1"]) is None  # v= must come first
    assert parse_policy(["garbage ; ; =="]) is None
    assert parse_policy([]) is None


def test_the_organisational_domain_comes_from_the_bundled_public_suffix_list():
    assert organisational_domain("mail.example.co.uk") == "example.co.uk"
    assert organisational_domain("a.b.example.com.br") == "example.com.br"
    assert organisational_domain("yahoo.com") == "yahoo.com"


def test_policies_come_from_dns_with_the_organisational_fallback_and_are_cached():
    long_record = "v=DMARC1; p=quarantine; rua=" + ",".join(
        f"mailto:reports{i}@big.example" for i in range(12))
    assert len(long_record) > 255
    records = {"_dmarc.reject.example": [REJECT],
               "_dmarc.example.co.uk": ["v=DMARC1; p=none; sp=reject"],
               "_dmarc.big.example": [long_record],  # served in pieces of 255
               "_dmarc.two.example": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
               "_dmarc.xn--mnchen-3ya.example": [REJECT],
               "_dmarc.slow.example": "TIMEOUT",
               "_dmarc.broken.example": "SERVFAIL"}
    with running_dns(records) as (zone, nameserver):
        looked = policies(nameserver)
        assert looked.policy("reject.example") == "reject"
        assert looked.policy("mail.example.co.uk") == "reject"  # sp= of the organisation
        assert looked.policy("example.co.uk") == "none"
        assert looked.policy("big.example") == "quarantine"
        assert looked.policy("two.example") == ""  # several records: none applies
        assert looked.policy("nothing.example") == ""  # NXDOMAIN
        assert looked.policy("münchen.example") == "reject"  # IDN, asked as xn--
        assert looked.policy("broken.example") == UNKNOWN
        started = time.monotonic()
        assert looked.policy("slow.example") == UNKNOWN
        assert time.monotonic() - started < 3  # the short timeout, not the default
        asked = len(zone.asked)
        assert looked.policy("reject.example") == "reject"
        assert looked.policy("slow.example") == UNKNOWN  # a failure is kept a while too
        assert len(zone.asked) == asked  # from the cache


def test_auto_munges_only_strict_domains_two_authors_and_unknown_answers():
    def message(author: str):
        return email.message_from_string(f"From: {author}\n\nhi\n",
                                         policy=email.policy.compat32)

    with running_dns({"_dmarc.reject.example": [REJECT],
                      "_dmarc.open.example": ["v=DMARC1; p=none"],
                      "_dmarc.slow.example": "TIMEOUT"}) as (_zone, nameserver):
        looked = policies(nameserver)
        assert action(looked, "auto", message("Ana <ana@reject.example>")) == "munge"
        assert action(looked, "auto", message("Ben <ben@open.example>")) == "none"
        assert action(looked, "auto", message("ben@nothing.example")) == "none"
        assert action(looked, "auto", message("a@open.example, b@open.example")) == "munge"
        assert action(looked, "auto", message("c@slow.example")) == "munge"  # DNS failed
        assert action(looked, "none", message("Ana <ana@reject.example>")) == "none"
        assert action(looked, "wrap", message("Ben <ben@open.example>")) == "wrap"


@pytest.fixture
def dns_site(tmp_path, sink):
    records = {"_dmarc.reject.example": [REJECT], "_dmarc.open.example": ["v=DMARC1; p=none"],
               "_dmarc.slow.example": "TIMEOUT"}
    with running_dns(records) as (zone, nameserver):
        folder = make_site(tmp_path, sink)
        config = folder / "listserv.toml"
        config.write_text(config.read_text().replace(
            "nameservers = []", f'nameservers = ["{nameserver}"]').replace(
            'timeout = "2s"', 'timeout = "1s"'))
        for row in json.loads(listserv("dkim", "show", "--json", site=folder).stdout):
            zone[row["name"]] = [row["value"]]
        listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
                 "--policy", "open", "--no-charter", site=folder)
        listserv("member", "add", "peace", "ben@example.net", "--preconfirmed", site=folder)
        yield folder, nameserver


def raw_message(caught):
    """The headers as they were written (not refolded or decoded)."""
    return email.message_from_bytes(caught.data, policy=email.policy.compat32)


def copies_to(sink, address: str, count: int) -> list:
    sink.wait_for_recipient(address, count)
    return [c for c in sink.caught if address in c.rcpt_tos]


def test_a_post_from_a_reject_domain_goes_out_munged_with_one_from(dns_site, sink):
    folder, nameserver = dns_site
    with running_server(folder) as server:
        send_mail(server.port, "ana@reject.example", ["peace@lists.example.org"],
                  post("Ana Diallo <ana@reject.example>"))
        send_mail(server.port, "ben@open.example", ["peace@lists.example.org"],
                  post("Ben Okafor <ben@open.example>", "Pumps", "p1@example.org"))
        send_mail(server.port, "carla@slow.example", ["peace@lists.example.org"],
                  post("Carla <carla@slow.example>", "Rain", "r1@example.org"))
        caught = copies_to(sink, "ben@example.net", 3)
    by_subject = {c.message["Subject"]: c for c in caught}
    munged = raw_message(by_subject["[peace] Wells"])
    assert munged.get_all("From") == ['"Ana Diallo via Peace" <peace@lists.example.org>']
    assert munged["Reply-To"] == "Ana Diallo <ana@reject.example>"
    assert munged["Author"] == "Ana Diallo <ana@reject.example>"
    assert dkim_verifies(by_subject["[peace] Wells"].data, nameserver) == [True]
    kept = by_subject["[peace] Pumps"].message
    assert kept["From"] == "Ben Okafor <ben@open.example>" and kept["Author"] is None
    slow = raw_message(by_subject["[peace] Rain"])  # DNS never answered: munged anyway
    assert slow["From"] == '"Carla via Peace" <peace@lists.example.org>'


def test_a_wrapping_forum_sends_the_post_untouched_inside_its_own_message(dns_site, sink):
    folder, nameserver = dns_site
    listserv("forum", "edit", "peace", "--dmarc", "wrap", site=folder)
    assert "wrap" in listserv("forum", "show", "peace", site=folder).stdout
    with running_server(folder) as server:
        send_mail(server.port, "ana@reject.example", ["peace@lists.example.org"],
                  post("Ana Diallo <ana@reject.example>"))
        (copy,) = copies_to(sink, "ben@example.net", 1)
    outer = copy.message
    assert raw_message(copy)["From"] == '"Ana Diallo via Peace" <peace@lists.example.org>'
    assert outer["Subject"] == "[peace] Wells" and outer["List-Id"]
    assert outer.get_content_type() == "multipart/mixed"
    (inner,) = [part for part in outer.iter_parts()]
    assert inner.get_content_type() == "message/rfc822"
    original = inner.get_content()
    assert original["From"] == "Ana Diallo <ana@reject.example>"
    assert original["Subject"] == "Wells"  # not tagged: the author's signature survives
    assert dkim_verifies(copy.data, nameserver) == [True]


def test_an_unknown_dmarc_choice_is_refused_in_one_line(dns_site):
    folder, _ = dns_site
    result = listserv("forum", "edit", "peace", "--dmarc", "sometimes", site=folder,
                      check=False)
    assert result.returncode == 2 and "sometimes" in result.stderr
