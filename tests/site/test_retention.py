"""[site] keep_sent and keep_raw: old sent delivery rows are purged, and the
raw text of distributed posts once nothing needs it any more; held posts,
and posts a digest still has to carry, keep theirs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from helpers import listserv, make_site, query, running_server, send_mail, wait_until

POST = ("From: Ana <ana@example.org>\nTo: {slug}@lists.example.org\nSubject: {subject}\n"
        "Message-ID: <{subject}@example.org>\n\n{subject}: the new well is running.\n")


def later(hours: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=hours)).isoformat()


def raw_length(folder, subject: str) -> int:
    ((length,),) = query(folder, "SELECT length(raw) FROM messages WHERE subject = ?",
                         [subject])
    return length


def purge(folder, hours: float) -> dict:
    return json.loads(listserv("purge", "--json", "--at", later(hours), site=folder).stdout)


def test_old_rows_and_texts_go_and_what_is_still_needed_stays(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace('keep_sent = "7d"', 'keep_sent = "2d"')
                      .replace('keep_raw = "90d"', 'keep_raw = "1h"'))
    for slug, digest in (("peace", "never"), ("water", "weekly")):
        listserv("forum", "create", slug, "--title", slug.title(), "--path", "thematic",
                 "--digest", digest, site=folder)
        for address in ("ana@example.org", "ben@example.net"):
            listserv("member", "add", slug, address, "--preconfirmed", site=folder)
    with running_server(folder) as server:
        for slug, subject in (("peace", "Wells"), ("water", "Rain")):
            send_mail(server.port, "ana@example.org", [f"{slug}@lists.example.org"],
                      POST.format(slug=slug, subject=subject))
        send_mail(server.port, "zoe@example.com", ["peace@lists.example.org"],  # held
                  POST.format(slug="peace", subject="Spam").replace("ana@", "zoe@"))
        sink.wait_for(lambda s: len(s.messages_to("ben@example.net")) == 2, 20, "two posts")
        wait_until(lambda: query(folder, "SELECT count(*) FROM holds")[0][0] == 1, 20,
                   "the hold")
        wait_until(lambda: query(folder, "SELECT count(*) FROM deliveries WHERE status = "
                                         "'sent'")[0][0] >= 2, 20, "the sent rows")
    sent = query(folder, "SELECT count(*) FROM deliveries WHERE status = 'sent'")[0][0]
    assert purge(folder, 0.5) == {"deliveries": 0, "raw": 0, "bodies": 0, "tokens": 0}
    assert purge(folder, 2)["raw"] == 1
    assert raw_length(folder, "Wells") == 0  # distributed, and its forum sends no digest
    assert raw_length(folder, "Rain") > 0  # water's weekly digest has yet to carry it
    assert raw_length(folder, "Spam") > 0  # held: a facilitator may still look at it
    assert "Spam" in listserv("held", "show", "1", site=folder).stdout
    # The record of the post whose text went stays.
    assert query(folder, "SELECT sender, size > 0 FROM messages WHERE subject = 'Wells'") == [
        ("ana@example.org", 1)]
    listserv("digest", "send", "water", "--at", later(2), site=folder)
    assert purge(folder, 3)["raw"] == 1
    assert raw_length(folder, "Rain") == 0
    assert query(folder, "SELECT count(*) FROM deliveries WHERE status = 'sent'")[0][0] == sent
    assert purge(folder, 49)["deliveries"] == sent  # older than keep_sent
    assert query(folder, "SELECT count(*) FROM deliveries WHERE status = 'sent'")[0][0] == 0
    assert raw_length(folder, "Spam") > 0


def test_a_keep_setting_shorter_than_an_hour_is_refused(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace('keep_raw = "90d"', 'keep_raw = "10s"'))
    result = listserv("purge", site=folder, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("[site] keep_raw must be at least '1h'")
