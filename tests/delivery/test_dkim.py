"""DKIM: every kind of mail the site sends is signed, and verifies with dkimpy
against the record `listserv dkim show` prints, served by a DNS server on
loopback; `dkim check`; `serve` refuses a missing or wrong key."""

from __future__ import annotations

import json
import os
import re
import stat
import time

import pytest
from helpers import (
    dkim_verifies,
    listserv,
    make_site,
    running_dns,
    running_server,
    send_mail,
    wait_until,
)

from listserv.delivery.dkim import new_key

POST = ("From: Ana Diallo <ana@example.org>\nTo: peace@lists.example.org\n"
        "Subject: Wells in the valley\nDate: Mon, 23 Nov 2026 09:00:00 +0000\n"
        "Message-ID: <wells-1@example.org>\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
        "Nous avons creusé deux puits.\n.\n..dots at the start of a line\n-- \nAna\n")


def published(folder) -> dict:
    """The TXT records `listserv dkim show --json` says to publish, by name."""
    rows = json.loads(listserv("dkim", "show", "--json", site=folder).stdout)
    return {row["name"]: [row["value"]] for row in rows}


def set_dkim(folder, **values) -> None:
    config = folder / "listserv.toml"
    text = config.read_text()
    for key, value in values.items():
        head, _, rest = text.partition("[dkim]\n")
        lines = rest.split("\n")
        lines = [f'{key} = "{value}"' if line.split(" = ")[0] == key else line
                 for line in lines]
        text = head + "[dkim]\n" + "\n".join(lines)
    config.write_text(text)


def setup_forum(folder) -> None:
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "members", "--facilitator", "fac@example.org", "--no-charter",
             site=folder)
    for address, mode in (("ana@example.org", "each"), ("ben@example.net", "each"),
                          ("dora@example.org", "digest")):
        listserv("member", "add", "peace", address, "--mode", mode, "--preconfirmed",
                 site=folder)


def test_init_makes_a_private_rsa_key_and_a_selector_and_show_prints_its_record(tmp_path,
                                                                               sink):
    folder = make_site(tmp_path, sink)
    key = folder / "data" / "dkim.key"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert b"BEGIN RSA PRIVATE KEY" in key.read_bytes()
    assert stat.S_IMODE(os.stat(folder / "data" / "dkim-ed25519.key").st_mode) == 0o600
    shown = listserv("dkim", "show", site=folder).stdout
    (selector,) = [line.split(" = ")[1].strip('"') for line in
                   (folder / "listserv.toml").read_text().splitlines()
                   if line.startswith("selector = ")]
    assert f"{selector}._domainkey.lists.example.org. IN TXT \"v=DKIM1; k=rsa; p=" in shown
    assert 'lists.example.org. IN TXT "v=spf1' in shown
    assert '_dmarc.lists.example.org. IN TXT "v=DMARC1; p=none' in shown
    record = published(folder)[f"{selector}._domainkey.lists.example.org"][0]
    assert len(record) > 255  # RSA-2048: the zone line splits it into strings
    assert '" "' in shown.splitlines()[1]


def test_dkim_check_says_in_one_line_whether_dns_publishes_the_key(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    records = published(folder)
    with running_dns() as (zone, nameserver):
        (folder / "listserv.toml").write_text((folder / "listserv.toml").read_text().replace(
            "nameservers = []", f'nameservers = ["{nameserver}"]'))
        missing = listserv("dkim", "check", site=folder, check=False)
        assert missing.returncode == 1
        assert "does not exist in DNS (NXDOMAIN)" in missing.stdout
        for name, values in records.items():  # in pieces of 255, as DNS carries them
            zone[name] = [[values[0][:255], values[0][255:]]] if "_domainkey" in name \
                else values
        good = listserv("dkim", "check", site=folder)
        assert good.stdout.startswith("OK: ") and len(good.stdout.splitlines()) == 1
        other = tmp_path / "other.key"
        new_key(other)
        set_dkim(folder, key_file=str(other))
        wrong = listserv("dkim", "check", site=folder, check=False)
        assert wrong.returncode == 1 and "publishes another key" in wrong.stdout


@pytest.mark.parametrize("problem", ["missing", "directory", "ed25519", "garbage"])
def test_serve_refuses_to_start_naming_a_missing_unreadable_or_wrong_key(tmp_path, sink,
                                                                        problem):
    folder = make_site(tmp_path, sink)
    key = folder / "data" / "dkim.key"
    key.unlink()
    if problem == "directory":
        key.mkdir()
    elif problem == "ed25519":
        new_key(key, "ed25519")
    elif problem == "garbage":
        key.write_text("-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n"
                       "-----END RSA PRIVATE KEY-----\n")
    result = listserv("serve", "--listen", "127.0.0.1:0", site=folder, check=False)
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {key}: ")
    assert {"missing": "no such file", "directory": "cannot be read",
            "ed25519": "is a Ed25519 key", "garbage": "is not an RSA private key"}[problem] \
        in line
    assert "Traceback" not in result.stderr


def test_every_kind_of_copy_the_site_sends_verifies_against_the_published_key(tmp_path,
                                                                              sink):
    folder = make_site(tmp_path, sink)
    setup_forum(folder)
    with running_dns(published(folder)) as (_zone, nameserver), \
            running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        ben = sink.wait_for_recipient("ben@example.net")  # the post
        send_mail(server.port, "new@example.net", ["peace-join@lists.example.org"],
                  "From: new@example.net\nSubject: join\n\njoin\n")  # a command reply
        send_mail(server.port, "zed@example.org", ["peace@lists.example.org"],
                  POST.replace("ana@", "zed@").replace("wells-1", "wells-2"))  # held: notice
        send_mail(server.port, "ana@example.org", ["whatsnew@lists.example.org"],
                  "From: ana@example.org\nSubject: New wells\nMessage-ID: <r1@example.org>"
                  "\n\nThe valley dug two wells.\nForum: peace\n")  # acknowledgement
        for address in ("new@example.net", "fac@example.org"):
            sink.wait_for_recipient(address)
        wait_until(lambda: len(sink.messages_to("ana@example.org")) >= 1, 20, "the ack")
        listserv("digest", "send", "peace", site=folder)
        sink.wait_for_recipient("dora@example.org")
        listserv("whatsnew", "publish", "--now", site=folder)
        wait_until(lambda: len(sink.messages_to("ben@example.net")) >= 2, 30, "What's New")
        caught = sink.caught
        verdicts = {(c.rcpt_tos[0], c.message["Subject"]): dkim_verifies(c.data, nameserver)
                    for c in caught}
    kinds = {"post": "[peace] Wells", "reply": "Confirm", "notice": "held",
             "acknowledgement": "New wells", "digest": "Digest", "whatsnew": "What's New"}
    found = {kind for kind, words in kinds.items()
             if any(words.lower() in str(subject).lower() for _, subject in verdicts)}
    assert found == set(kinds), sorted(verdicts)
    assert all(v == [True] for v in verdicts.values()), verdicts
    (post,) = [m for m in ben if m["Subject"] == "[peace] Wells in the valley"]
    assert "list-id" in post["DKIM-Signature"] and "from" in post["DKIM-Signature"]
    assert "Ana" in post.get_content()  # the signature line below "-- " is covered too


def test_personal_copies_are_signed_each_with_their_own_unsubscribe_headers(tmp_path, sink):
    folder = make_site(tmp_path, sink, web_url="https://lists.example.org")
    setup_forum(folder)
    set_dkim(folder, ed25519_selector="ed2026")
    records = published(folder)
    assert any("k=ed25519" in values[0] for values in records.values())
    with running_dns(records) as (_zone, nameserver), running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        (copy,) = sink.wait_for_recipient("ben@example.net")
        (data,) = [c.data for c in sink.caught if "ben@example.net" in c.rcpt_tos]
        assert dkim_verifies(data, nameserver) == [True, True]  # Ed25519 and RSA
        forged = data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                              b"List-Unsubscribe-Post: List-Unsubscribe=Nothing")
        assert dkim_verifies(forged, nameserver) == [False, False]
    assert "https://lists.example.org/unsubscribe/" in copy["List-Unsubscribe"]
    assert "list-unsubscribe-post" in copy["DKIM-Signature"]


def test_a_second_selector_signs_beside_the_first_during_a_rotation(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    setup_forum(folder)
    listserv("dkim", "new-key", "data/dkim-next.key", site=folder)
    assert stat.S_IMODE(os.stat(folder / "data" / "dkim-next.key").st_mode) == 0o600
    set_dkim(folder, next_key_file="data/dkim-next.key", next_selector="ls-next")
    records = published(folder)
    with running_dns(records) as (zone, nameserver), running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST)
        sink.wait_for_recipient("ben@example.net")
        (data,) = [c.data for c in sink.caught if "ben@example.net" in c.rcpt_tos]
        assert dkim_verifies(data, nameserver) == [True, True]
        old = [name for name in records if "_domainkey" in name and "ls-next" not in name]
        zone[old[0]] = None  # the old record withdrawn: the new one still verifies
        assert sorted(dkim_verifies(data, nameserver)) == [False, True]


LOWBAND = 4000
PARAGRAPH = ("Les femmes de la coopérative ont partagé les semences et les outils "
             "dans toute la vallée, et elles ont tout écrit dans le cahier.\n")


def lowband_digest(tmp_path, sink, reader: str, *, signed: bool) -> list:
    """The parts of the peace digest caught for `reader`, a lowband digest member,
    under a budget of LOWBAND bytes; RSA and Ed25519 signatures when `signed`."""
    folder = make_site(tmp_path / reader.split("@")[0], sink)
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace("lowband_budget = 20000",
                                                 f"lowband_budget = {LOWBAND}"))
    setup_forum(folder)
    listserv("member", "add", "peace", reader, "--mode", "digest", "--profile", "lowband",
             "--preconfirmed", site=folder)
    set_dkim(folder, ed25519_selector="ed2026" if signed else "")
    if not signed:
        set_dkim(folder, selector="")
    records = published(folder)
    before = len(sink.messages_to("ben@example.net"))
    with running_dns(records) as (_zone, nameserver), running_server(folder) as server:
        for n in range(3):
            send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                      POST.replace("wells-1", f"wells-l{n}").replace(
                          "Nous avons creusé deux puits.", f"Semaine {n}.\n" + PARAGRAPH * 12))
        sink.wait_for_recipient("ben@example.net", count=before + 3)
        listserv("digest", "send", "peace", site=folder)
        sink.wait_for_recipient(reader)
        time.sleep(1)  # every part of the digest
        parts = [c for c in sink.caught if reader in c.rcpt_tos]
        verdicts = [dkim_verifies(c.data, nameserver) for c in parts]
    assert verdicts == [[True, True] if signed else []] * len(parts)
    return parts


def test_lowband_digest_parts_stay_within_the_budget_with_their_signatures(tmp_path, sink):
    signed = lowband_digest(tmp_path, sink, "lea@example.org", signed=True)
    assert len(signed) > 2
    assert all(len(c.data) <= LOWBAND for c in signed), [len(c.data) for c in signed]
    unsigned = lowband_digest(tmp_path, sink, "eve@example.org", signed=False)
    assert all(len(c.data) <= LOWBAND for c in unsigned)
    # Without signatures to make room for, each part carries more of the digest.
    assert len(unsigned) < len(signed)
    text = [sum(len(c.message.get_content()) for c in parts) / len(parts)
            for parts in (signed, unsigned)]
    assert text[1] > text[0] + 500, text


def test_a_lowband_members_copies_of_a_post_stay_within_the_budget_signed(tmp_path, sink):
    """A long post in French (quoted-printable swells it) to a lowband member
    under a 4,000-byte budget: each part as sent, with its list headers and
    RSA and Ed25519 signatures, is within the budget, and they all verify."""
    folder = make_site(tmp_path, sink)
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace("lowband_budget = 20000",
                                                 f"lowband_budget = {LOWBAND}"))
    setup_forum(folder)
    listserv("member", "add", "peace", "lea@example.org", "--profile", "lowband",
             "--preconfirmed", site=folder)
    set_dkim(folder, ed25519_selector="ed2026")
    records = published(folder)
    with running_dns(records) as (_zone, nameserver), running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  POST.replace("Nous avons creusé deux puits.", PARAGRAPH * 40))
        sink.wait_for_recipient("ben@example.net")
        (first,) = sink.wait_for_recipient("lea@example.org")[:1]
        total = int(re.search(r"\(\d+/(\d+)\)$", first["Subject"]).group(1))  # "(1/3)"
        assert total >= 2
        sink.wait_for_recipient("lea@example.org", count=total)
        parts = [c for c in sink.caught if "lea@example.org" in c.rcpt_tos]
        assert len(parts) == total
        verdicts = [dkim_verifies(c.data, nameserver) for c in parts]
    assert verdicts == [[True, True]] * len(parts)
    assert all(len(c.data) <= LOWBAND for c in parts), [len(c.data) for c in parts]
    text = "".join(c.message.get_content() for c in parts)
    assert text.count("cahier") == 40  # nothing lost between the parts


def test_rsa_signatures_come_from_openssl_and_are_the_bytes_dkimpy_itself_would_write(
        tmp_path):
    import hashlib

    import dkim as dkimpy
    from dkim import crypto

    from listserv.delivery import dkim_rsa
    from listserv.delivery.dkim import load_key

    new_key(tmp_path / "rsa.pem")
    key = load_key(tmp_path / "rsa.pem", "ls1", "rsa")
    assert dkimpy.RSASSA_PKCS1_v1_5_sign is dkim_rsa.rsassa_pkcs1_v1_5_sign  # installed
    parsed = dkimpy.parse_pem_private_key(key.private)
    assert parsed.openssl is not None and parsed is dkimpy.parse_pem_private_key(key.private)
    for text in (b"", b"From: ana@example.org\r\n", POST.encode("utf-8") * 40):
        digest = hashlib.sha256(text)
        assert dkim_rsa.rsassa_pkcs1_v1_5_sign(digest, parsed) == \
            crypto.RSASSA_PKCS1_v1_5_sign(digest, crypto.parse_pem_private_key(key.private))
    # A whole signature made this way verifies with dkimpy against the public key.
    message = POST.replace("\n", "\r\n").encode("utf-8")
    signed = dkimpy.sign(message, b"ls1", b"lists.example.org", key.private,
                         canonicalize=(b"relaxed", b"relaxed")) + message
    record = key.record.encode("ascii")
    assert dkimpy.verify(signed, dnsfunc=lambda name, timeout=5: record)
