"""A real Postfix in front: mail goes in through Postfix's smtpd, to `listserv
serve` by LMTP (the transport map `listserv mta postfix` writes), out through
the same Postfix as smarthost, into members' Maildirs by virtual(8). An
unknown recipient is refused at Postfix's RCPT. Skipped without Postfix."""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile
from pathlib import Path

import pytest
from helpers import Server, free_port, listserv, query, wait_for_port, wait_until, write_site

from listserv.site import mta

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"
DOMAIN = "lists.example.org"
MEMBERS = "members.example"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(POSTFIX) or not os.path.exists("/etc/postfix/master.cf"),
                       reason="Postfix is not installed (Debian: apt-get install postfix)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="a private Postfix instance needs root"),
]


def master_cf(port: int) -> str:
    """Debian's master.cf, smtpd on our port, nothing chrooted (no copies of /etc)."""
    lines = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 8 and not line[0].isspace() and not line.startswith("#"):
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = str(port)
            fields[4] = "n"
            line = "  ".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.fixture
def postfix():
    """A private Postfix on 127.0.0.1:<port>; yields (its folder, port). The folder
    is outside pytest's tmp_path, whose 0700 parents Postfix's own user cannot enter."""
    base = Path(tempfile.mkdtemp(prefix="listserv-postfix-"))
    base.chmod(0o755)
    config, queue, data, mail = (base / name for name in ("etc", "queue", "data", "mail"))
    for folder in (config, queue, data, mail):
        folder.mkdir(parents=True)
    owner = pwd.getpwnam("postfix")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    os.chown(mail, owner.pw_uid, owner.pw_gid)
    port = free_port()
    yield base, port
    subprocess.run([POSTFIX, "-c", str(config), "stop"], capture_output=True, timeout=30)
    master = data / "master.lock"  # a master that did not stop: end it by its pid
    pid = master.read_text().strip() if master.exists() else ""
    if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
        os.kill(int(pid), 9)
    shutil.rmtree(base, ignore_errors=True)


def start_postfix(base: Path, port: int, site: Path) -> None:
    config = base / "etc"
    owner = pwd.getpwnam("postfix")
    (base / "vmailbox").write_text("".join(f"{user}@{MEMBERS} {MEMBERS}/{user}/\n"
                                           for user in ("ana", "ben", "carla")))
    subprocess.run([POSTMAP, str(base / "vmailbox")], check=True)
    for name in (mta.TRANSPORT, mta.RECIPIENTS):
        subprocess.run([POSTMAP, str(site / "data" / "postfix" / name)], check=True)
    lines = mta.main_cf_lines(DOMAIN, site / "data" / "postfix")
    (config / "main.cf").write_text("\n".join([
        "compatibility_level = 3.6",
        f"queue_directory = {base / 'queue'}",
        f"data_directory = {base / 'data'}",
        f"maillog_file = {base / 'maillog'}", f"maillog_file_prefixes = {base}",
        "mail_owner = postfix", "setgid_group = postdrop",
        "inet_interfaces = 127.0.0.1", "inet_protocols = ipv4",
        "myhostname = mx.lists.example.org", "mydestination =",
        "mynetworks = 127.0.0.0/8", "smtp_host_lookup = native", "lmtp_host_lookup = native",
        "smtp_dns_support_level = disabled", "smtpd_tls_security_level = none",
        "smtp_tls_security_level = none", "alias_maps =", "alias_database =",
        f"virtual_mailbox_domains = {MEMBERS}", f"virtual_mailbox_base = {base / 'mail'}",
        f"virtual_mailbox_maps = hash:{base / 'vmailbox'}",
        f"virtual_uid_maps = static:{owner.pw_uid}", f"virtual_gid_maps = static:{owner.pw_gid}",
        *lines, ""]))
    (config / "master.cf").write_text(master_cf(port))
    result = subprocess.run([POSTFIX, "-c", str(config), "start"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for_port(port)


def maildir(base: Path, user: str) -> list[bytes]:
    new = base / "mail" / MEMBERS / user / "new"
    return [path.read_bytes() for path in new.iterdir()] if new.is_dir() else []


def postfix_site(base: Path, port: int) -> tuple[Path, int]:
    """A site whose smarthost is the Postfix on `port`, listening by LMTP; one forum."""
    serve_port = free_port()
    site = write_site(base / "site", smarthost_port=port,
                      extra=f'[smtp]\nlisten = "127.0.0.1:{serve_port}"\nprotocol = "lmtp"\n')
    listserv("init", str(site), "--domain", DOMAIN, check=False)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic",
             "--policy", "open", "--no-charter", site=site)
    return site, serve_port


def test_post_through_postfix_reaches_members_maildirs(postfix):
    base, port = postfix
    site, serve_port = postfix_site(base, port)
    for user in ("ana", "ben"):
        listserv("member", "add", "peace", f"{user}@{MEMBERS}", "--preconfirmed", site=site)
    out = listserv("mta", "postfix", site=site).stdout
    assert f"lmtp:inet:127.0.0.1:{serve_port}" in \
        (site / "data" / "postfix" / "transport").read_text()
    assert all(line in out for line in mta.main_cf_lines(DOMAIN, site / "data" / "postfix"))
    start_postfix(base, port, site)
    server = Server(site, port=serve_port).start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example")
            client.mail(f"ana@{MEMBERS}")
            code, reply = client.rcpt(f"nosuch@{DOMAIN}")
            assert code == 550, reply  # refused by Postfix itself, from the map
            client.rset()
            client.sendmail(f"ana@{MEMBERS}", [f"peace@{DOMAIN}"],
                            b"From: Ana <ana@members.example>\r\nTo: peace@lists.example.org\r\n"
                            b"Subject: Water in the valley\r\nMessage-ID: <m1@members.example>"
                            b"\r\n\r\nThe wells are dry.\r\n")
        log = base / "maillog"
        wait_until(lambda: maildir(base, "ben"), timeout=45,
                   what=f"the post in ben's Maildir; Postfix log:\n"
                        f"{log.read_text() if log.exists() else ''}")
    finally:
        server.stop()
    delivered = maildir(base, "ben")[0]
    assert b"The wells are dry." in delivered and b"Water in the valley" in delivered
    text = log.read_text()
    assert re.search(rf"to=<peace@{DOMAIN}>.*relay=127\.0\.0\.1\[127\.0\.0\.1\]:{serve_port}"
                     rf".*status=sent", text), text


def rcpt_code(port: int, address: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example")
        client.mail(f"carla@{MEMBERS}")
        return client.rcpt(address)[0]


def test_a_subscription_round_trip_and_a_new_forum_work_through_postfix(postfix):
    base, port = postfix
    site, serve_port = postfix_site(base, port)
    listserv("mta", "postfix", site=site)
    start_postfix(base, port, site)
    assert rcpt_code(port, f"water@{DOMAIN}") == 550  # no such forum yet
    created = listserv("forum", "create", "water", "--title", "Water", "--path", "thematic",
                       site=site)
    assert "Rewrote the Postfix maps" in created.stderr
    server = Server(site, port=serve_port).start()
    try:
        # the forum commands rewrite and postmap the maps: Postfix takes the new forum at once
        wait_until(lambda: rcpt_code(port, f"water-join@{DOMAIN}") == 250, timeout=20,
                   what="Postfix accepting the new forum's address")
        # a forged token: Postfix asks serve at RCPT and refuses it, so no bounce is made
        for forged in (f"peace-confirm+{'5e' * 16}@{DOMAIN}", f"peace-leave+{'0a' * 12}@{DOMAIN}"):
            assert rcpt_code(port, forged) == 550, forged
        assert query(site, "SELECT count(*) FROM messages") == [(0,)]
        carla = f"carla@{MEMBERS}"
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(carla, [f"peace-join@{DOMAIN}"],
                            f"From: Carla <{carla}>\r\nTo: peace-join@{DOMAIN}\r\n"
                            f"Subject: join\r\nMessage-ID: <j1@{MEMBERS}>\r\n\r\n"
                            f"Please add me.\r\n".encode())
        wait_until(lambda: maildir(base, "carla"), timeout=45,
                   what="the confirmation request in carla's Maildir")
        request = email.message_from_bytes(maildir(base, "carla")[0], policy=email.policy.default)
        _, confirm = email.utils.parseaddr(str(request["Reply-To"]))
        assert confirm.startswith("peace-confirm+"), confirm  # the + detail: recipient_delimiter
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(carla, [confirm],
                            f"From: Carla <{carla}>\r\nTo: {confirm}\r\n"
                            f"Subject: Re: {request['Subject']}\r\n"
                            f"Message-ID: <j2@{MEMBERS}>\r\n\r\nyes\r\n".encode())
        wait_until(lambda: query(site, "SELECT count(*) FROM members m JOIN forums f "
                                       "ON f.id = m.forum_id WHERE f.slug = 'peace' "
                                       "AND m.address = ?", [carla]) == [(1,)],
                   timeout=45, what="carla a member of peace")
        wait_until(lambda: len(maildir(base, "carla")) >= 2, timeout=45,
                   what="the welcome in carla's Maildir")
    finally:
        server.stop()
