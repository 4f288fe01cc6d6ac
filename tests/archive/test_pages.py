"""The web archive, written as posts go out and served by `listserv serve`."""

from __future__ import annotations

import re
import threading
import time

from archivekit import WEB, archived, forum, get, json_of, mail, post_ids, web_site
from helpers import listserv, query, running_server, send_mail


def test_a_post_gets_its_page_thread_month_and_feed_and_the_copies_say_where(tmp_path, sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("Water for every village", "Clean water, ana@example.org says."))
        (copy,) = sink.wait_for_recipient("ben@example.net")
        archived(folder, 1)
        (post_id,) = post_ids(folder)
        status, headers, body = get(web, f"/archive/peace/{post_id}.html")
        assert status == 200
        page = body.decode()
        assert "Water for every village" in page
        assert "ana at example\u2026" in page and "ana@example.org" not in page
        assert "script-src" not in headers["Content-Security-Policy"]
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        for link in re.findall(r'href="([^"]+)"', page):
            if link.startswith(("http", "/", "#")):
                continue
            target = f"/archive/peace/{link}" if not link.startswith("../") \
                else "/archive/" + link[3:]
            assert get(web, target)[0] == 200, link
        ((month_name,),) = query(folder, "SELECT month FROM archive_posts")
        month = get(web, f"/archive/peace/{month_name}.html")
        feed = get(web, "/archive/peace/feed.atom")
        home = get(web, "/archive/peace/")
    assert copy["Archived-At"] == f"<{WEB}/archive/peace/{post_id}.html>"
    assert copy["List-Archive"] == (f"<{WEB}/archive/peace/>, "
                                    "<mailto:peace-request@lists.example.org?subject=index>")
    assert month[0] == 200 and f'href="{post_id}.html"' in month[2].decode()
    assert feed[0] == 200 and feed[1]["Content-Type"].startswith("application/atom+xml")
    assert b"Water for every village" in feed[2]
    assert home[0] == 200 and b"peace-join@lists.example.org" in home[2]


def test_a_burst_of_posts_rewrites_the_month_index_a_few_times_not_once_a_post(tmp_path,
                                                                              sink):
    """While posts keep coming, the pages every post is on (month, forum index,
    feed, directory) are written once per pace (2 s), not once per post; the
    burst's last marks are written when it is over, with nothing to wake them."""
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    pages = folder / "data" / "archive" / "peace"
    versions: list[tuple[int, int]] = []  # (inode, mtime) of index.html as it changes
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            try:
                stat = (pages / "index.html").stat()
            except OSError:
                pass
            else:
                seen = (stat.st_ino, stat.st_mtime_ns)
                if not versions or versions[-1] != seen:
                    versions.append(seen)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    with running_server(folder) as server:
        watcher.start()
        started = time.monotonic()
        for n in range(24):
            send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                      mail(f"Seed bank {n}", f"Seed bank news, part {n}.",
                           message_id=f"<s{n}@example.org>"))
            time.sleep(0.1)
        burst = time.monotonic() - started
        archived(folder, 24)
        watching.set()
        watcher.join()
        status, _, month = get(web, "/archive/peace/" + next(pages.glob("20*.html")).name)
    assert status == 200
    assert all(f'href="{post_id}.html"'.encode() in month for post_id in post_ids(folder))
    assert len(post_ids(folder)) == 24
    # once a post (about 24 times) without the pace; once per 2 s with it
    assert 1 <= len(versions) <= burst / 2 + 3, (len(versions), round(burst, 1))


def test_rebuild_writes_the_same_bytes_and_remove_takes_a_post_out_everywhere(tmp_path, sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    with running_server(folder) as server:
        for n in range(3):
            send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                      mail(f"Wells {n}", f"Digging well number {n}.",
                           message_id=f"<w{n}@example.org>"))
        archived(folder, 3)
    root = folder / "data" / "archive"
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    listserv("archive", "rebuild", site=folder)
    after = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert before == after
    first, second, third = post_ids(folder)
    listserv("archive", "remove", f"peace-{second}", site=folder)
    listserv("archive", "rebuild", "peace", site=folder)
    assert not (root / "peace" / f"{second}.html").exists()
    for page in [root / "peace" / "index.html", root / "peace" / "feed.atom",
                 *(root / "peace").glob("20*.html"), *(root / "peace").glob("t*.html")]:
        assert b"Wells 1" not in page.read_bytes(), page
    assert f'href="{third}.html"'.encode() in (root / "peace" / f"{first}.html").read_bytes()
    assert query(folder, "SELECT count(*) FROM archive_search WHERE archive_search MATCH "
                 "'Digging'")[0][0] == 2
    again = listserv("archive", "remove", f"peace-{second}", site=folder)
    assert again.returncode == 0
    missing = listserv("archive", "remove", "peace-999999", site=folder, check=False)
    assert missing.returncode == 1 and "no archived post" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_each_archive_policy_keeps_what_it_says_and_x_no_archive_keeps_a_post_out(tmp_path,
                                                                                   sink):
    folder, web = web_site(tmp_path, sink)
    forum(folder, "peace")
    forum(folder, "farmers", "--archive", "members")
    forum(folder, "quiet", "--archive", "none")
    shown = {row["slug"]: row["archive"] for row in
             json_of(listserv("forum", "list", "--json", site=folder))}
    assert shown == {"peace": "public", "farmers": "members", "quiet": "none"}
    with running_server(folder) as server:
        for slug in ("peace", "farmers", "quiet"):
            send_mail(server.port, "ana@example.org", [f"{slug}@lists.example.org"],
                      mail(f"News of {slug}", "Hello.", message_id=f"<{slug}@example.org>",
                           to=f"{slug}@lists.example.org"))
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("Private", "Do not keep this.", message_id="<private@example.org>",
                       headers="X-No-Archive: yes\n"))
        archived(folder, 4)
        sink.wait_for(lambda s: len(s.messages_to("ben@example.net")) == 4)
        copies = {c["Subject"]: c for c in sink.messages_to("ben@example.net")}
        assert get(web, "/archive/farmers/index.html")[0] == 404
        assert get(web, "/archive/quiet/index.html")[0] == 404
        kept = dict(query(folder, "SELECT header_id, archive_status FROM posts"))
        assert kept == {"peace@example.org": "kept", "farmers@example.org": "kept",
                        "quiet@example.org": "skipped", "private@example.org": "skipped"}
        listserv("forum", "edit", "peace", "--archive", "members", site=folder)
        archived(folder, 4)
        gone = get(web, "/archive/peace/index.html")[0]
    assert gone == 404
    assert copies["[peace] Private"]["Archived-At"] is None
    assert copies["[peace] News of peace"]["Archived-At"].startswith(f"<{WEB}/archive/peace/")
    assert copies["[farmers] News of farmers"]["Archived-At"] is None
    assert copies["[farmers] News of farmers"]["List-Archive"] == \
        "<mailto:farmers-request@lists.example.org?subject=index>"
    assert copies["[quiet] News of quiet"]["List-Archive"] is None
