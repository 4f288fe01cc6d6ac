"""Forum digests: MIME and RFC 1153, on schedule or by size, every post in exactly one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from digestkit import populate, query, set_key
from helpers import listserv, make_site, running_server, send_mail

from digests import forum_digest, publications
from listserv.intake.pipeline import distribute_pending, process_received
from listserv.intake.smtp import store_incoming
from listserv.site import forums, members
from listserv.site.folder import Site

DIGESTERS = [("water", "dora@example.org", "Dora", "en", "digest", "email"),
             ("water", "yao@example.net", "Yao", "fr", "digest", "lowband")]


def post(number: int, sender: str = "amina@example.org") -> str:
    return (f"From: Amina <{sender}>\nTo: water@lists.example.org\nSubject: Well {number}\n"
            f"Message-ID: <well-{number}@example.org>\nContent-Type: text/html\n\n"
            f"<p>Well number {number} is running.<script>alert(1)</script></p>\n")


def digests_to(sink, address: str) -> list:
    return [m for m in sink.messages_to(address) if "Digest" in (m["Subject"] or "")
            or "Recueil" in (m["Subject"] or "")]


def test_digest_members_get_a_mime_digest_or_rfc_1153_text_when_enough_posts_wait(
        hub, sink):
    set_key(hub, "digest", "max_posts", "2")
    populate(hub, DIGESTERS + [("water", "eli@example.org", "Eli", "en", "digest", "email")])
    with running_server(hub) as server:
        for number in (1, 2):
            send_mail(server.port, "amina@example.org", ["water@lists.example.org"],
                      post(number))
        sink.wait_for(lambda s: digests_to(s, "dora@example.org"), 20, "dora's digest")
        sink.wait_for(lambda s: digests_to(s, "yao@example.net"), 20, "yao's digest")
        sink.wait_for(lambda s: digests_to(s, "eli@example.org"), 20, "eli's digest")
    # Dora and Eli (one domain, the same copy) share a queue row and a transaction.
    (shared,) = [c for c in sink.caught if "dora@example.org" in c.rcpt_tos]
    assert sorted(shared.rcpt_tos) == ["dora@example.org", "eli@example.org"]
    assert query(hub, "SELECT recipient, size FROM deliveries WHERE ref LIKE 'digest:%' "
                      "AND domain = 'example.org'") == [("dora@example.org", 2)]
    assert [m["Subject"] for m in sink.messages_to("dora@example.org")] == \
        ["[water] Water commons Digest, Vol 1, Issue 1"]  # no single posts in digest mode
    (mime,) = digests_to(sink, "dora@example.org")
    assert mime.get_content_type() == "multipart/mixed"
    assert mime["List-Id"] == '"Water commons" <water.lists.example.org>'
    toc, digest = mime.get_payload()
    assert "Today's Topics (2 message(s)" in toc.get_content()
    assert "  1. Well 1 (Amina <amina@example.org>)" in toc.get_content()
    assert digest.get_content_type() == "multipart/digest"
    posts = [part.get_payload()[0] for part in digest.get_payload()]
    assert [p["Subject"] for p in posts] == ["[water] Well 1", "[water] Well 2"]
    assert all(part.get_content_type() == "message/rfc822" for part in digest.get_payload())
    assert "<script>" not in posts[0].get_payload(decode=True).decode()
    assert "List-Id" not in posts[0]
    (plain,) = digests_to(sink, "yao@example.net")
    text = plain.get_content().replace("\r\n", "\n")
    assert plain.get_content_type() == "text/plain"
    assert "Sujets du jour" in text and "-" * 70 in text and "\n" + "-" * 30 + "\n" in text
    assert "Subject: Well 2" in text and "Well number 2 is running." in text
    assert "End of Water commons Digest, Vol 1, Issue 1" in text
    assert "alert(1)" not in text


def test_each_post_goes_into_exactly_one_digest_on_the_forums_schedule(site, now):
    db = site.db
    forums.create(db, "peace", title="Peace", path="thematic", now=now,
                          digest="daily")
    members.add(db, "peace", "ana@example.org", now=now, languages=("en",), mode="each")
    members.add(db, "peace", "dora@example.org", now=now, languages=("en",), mode="digest")
    day = datetime(2026, 11, 23, tzinfo=timezone.utc)

    def distribute(number: int, at: datetime) -> None:
        raw = post(number, "ana@example.org").replace("water@", "peace@").replace(
            "\n", "\r\n").encode()
        store_incoming(db, raw, "ana@example.org", ["peace@lists.example.org"], at)
        process_received(db, site, at)
        distribute_pending(db, site, at)

    distribute(1, day + timedelta(hours=5))
    distribute(2, day + timedelta(hours=7))
    assert forum_digest.publish_due(db, site, day + timedelta(hours=5, minutes=30)) == []
    first = forum_digest.publish_due(db, site, day + timedelta(hours=6, minutes=1))
    assert first == ["digest:peace:1"]
    assert forum_digest.publish_due(db, site, day + timedelta(hours=9)) == []
    distribute(3, day + timedelta(days=1, hours=1))
    second = forum_digest.publish_due(db, site, day + timedelta(days=1, hours=6))
    assert second == ["digest:peace:2"]
    carried = {key: [i["title"] for s in publications.get(db, key)["payload"]["sections"]
                     for i in s["items"]] for key in first + second}
    assert carried == {"digest:peace:1": ["Well 1"], "digest:peace:2": ["Well 2", "Well 3"]}
    assert db.execute("SELECT count(*) FROM deliveries WHERE recipient = 'dora@example.org' "
                      "AND ref LIKE 'digest:%'").fetchone()[0] == 2
    again = forum_digest.publish_due(db, site, day + timedelta(days=1, hours=7))
    assert again == [] and db.execute("SELECT count(*) FROM digest_posts").fetchone()[0] == 3


def test_digest_send_on_the_command_line_sends_what_waits_and_nothing_twice(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    populate(folder, [("water", "amina@example.org", "Amina", "en", "each", "email"),
                      *DIGESTERS])
    with running_server(folder) as server:
        send_mail(server.port, "amina@example.org", ["water@lists.example.org"], post(1))
        sink.wait_for_recipient("amina@example.org")
        assert listserv("digest", "send", "water", site=folder).stdout.split() == \
            ["digest:water:1"]
        again = listserv("digest", "send", "water", site=folder, check=False)
        assert again.returncode == 1
        assert "no post of 'water' is waiting for a digest" in again.stderr
        (digest,) = sink.wait_for_recipient("dora@example.org")
    rows = query(folder, "SELECT key, volume, number FROM publications")
    assert rows == [("digest:water:1", 1, 1)]
    assert digest["Subject"] == "[water] Water commons Digest, Vol 1, Issue 1"
    payload = Site(folder).db.execute("SELECT payload FROM publications").fetchone()[0]
    assert '"ref": "POST-1"' in payload and '"author": "Amina <amina@example.org>"' in payload
    assert [m["Subject"] for m in sink.messages_to("amina@example.org")] == ["[water] Well 1"]
