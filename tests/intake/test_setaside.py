"""Work set aside after failing can be tried again from the command line,
through a running `listserv serve`: failed deliveries with `queue retry`,
messages and posts the pipeline could not handle with `held retry`."""

from __future__ import annotations

import json
import sqlite3

from helpers import (
    Server,
    free_port,
    listserv,
    make_site,
    query,
    running_server,
    send_mail,
    wait_until,
)

POST = ("From: Ana <ana@example.org>\nTo: {slug}@lists.example.org\nSubject: Wells {n}\n"
        "Message-ID: <wells-{n}@example.org>\n\nThe new well is running.\n")


def forum_site(tmp_path, sink, slug="peace"):
    folder = make_site(tmp_path, sink)
    listserv("forum", "create", slug, "--title", "Peace", "--path", "thematic", site=folder)
    for address in ("ana@example.org", "ben@example.net"):
        listserv("member", "add", slug, address, "--preconfirmed", site=folder)
    return folder


def set_key(folder, old: str, new: str) -> None:
    config = folder / "listserv.toml"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))


def test_queue_retry_all_sends_deliveries_that_had_failed_for_good(tmp_path, sink):
    folder = forum_site(tmp_path, sink)
    smarthost = f'smarthost = "127.0.0.1:{sink.port}"'
    nobody = f'smarthost = "127.0.0.1:{free_port()}"'  # nobody listens there
    set_key(folder, smarthost, nobody)
    set_key(folder, 'give_up_after = "5d"', 'give_up_after = "2s"')
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  POST.format(slug="peace", n=1))
        wait_until(lambda: query(folder, "SELECT count(*) FROM deliveries WHERE status = "
                                         "'failed'")[0][0] >= 1, 30, "the delivery to fail")
    failed = json.loads(listserv("queue", "--json", site=folder).stdout)["failed"]
    assert failed and sink.messages_to("ben@example.net") == []
    set_key(folder, 'give_up_after = "2s"', 'give_up_after = "5d"')
    set_key(folder, nobody, smarthost)
    with running_server(folder):
        result = listserv("queue", "retry", "--all", site=folder)
        assert result.stdout.startswith("Queued again: ")
        (copy,) = sink.wait_for_recipient("ben@example.net")
    assert copy["Subject"] == "[peace] Wells 1"
    assert query(folder, "SELECT count(*) FROM deliveries WHERE status = 'failed'")[0][0] == 0


def test_queue_retry_of_an_unknown_or_sent_delivery_is_one_line(tmp_path, sink):
    folder = forum_site(tmp_path, sink)
    unknown = listserv("queue", "retry", "999", site=folder, check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: delivery 999 does not exist (see 'listserv queue')"
    nothing = listserv("queue", "retry", site=folder, check=False)
    assert nothing.returncode == 2 and "give the ids of failed deliveries, or --all" in \
        nothing.stderr
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  POST.format(slug="peace", n=2))
        sink.wait_for_recipient("ben@example.net")
        wait_until(lambda: query(folder, "SELECT count(*) FROM deliveries WHERE status = "
                                         "'sent'")[0][0] >= 1, 10, "the sent row")
    ((sent_id,),) = query(folder, "SELECT id FROM deliveries WHERE status = 'sent' LIMIT 1")
    again = listserv("queue", "retry", str(sent_id), site=folder, check=False)
    assert again.returncode == 1
    assert again.stderr.strip() == (f"Error: delivery {sent_id} is sent, not failed or "
                                    f"bounced; nothing to retry")
    assert len(sink.messages_to("ben@example.net")) == 1


def test_held_retry_hands_a_set_aside_message_to_the_pipeline_again(tmp_path, sink):
    folder = forum_site(tmp_path, sink, slug="water")
    # A hand edit puts text where the size limit (a number) belongs: the pipeline
    # raises on every post to the forum, and sets the message aside after 3 tries.
    conn = sqlite3.connect(str(folder / "data" / "listserv.db"))
    with conn:
        conn.execute("UPDATE forums SET max_size = 'lots' WHERE slug = 'water'")
    conn.close()
    server = Server(folder).start()
    try:
        send_mail(server.port, "ana@example.org", ["water@lists.example.org"],
                  POST.format(slug="water", n=3))
        wait_until(lambda: query(folder, "SELECT count(*) FROM messages WHERE status = "
                                         "'failed'")[0][0] == 1, 30, "the message set aside")
        ((message_id,),) = query(folder, "SELECT id FROM messages WHERE status = 'failed'")
        conn = sqlite3.connect(str(folder / "data" / "listserv.db"))
        with conn:  # the cause is mended...
            conn.execute("UPDATE forums SET max_size = 0 WHERE slug = 'water'")
        conn.close()
        result = listserv("held", "retry", str(message_id), "--json", site=folder)
        assert json.loads(result.stdout) == {"messages": [message_id], "posts": []}
        (copy,) = sink.wait_for_recipient("ben@example.net", timeout=20)  # ...and it goes out
    finally:
        server.stop()
    assert copy["Subject"] == "[water] Wells 3"
    again = listserv("held", "retry", str(message_id), site=folder, check=False)
    assert again.returncode == 1
    assert again.stderr.startswith(f"Error: message {message_id} is ")
    assert again.stderr.strip().endswith(", not set aside; nothing to retry")
    assert listserv("held", "retry", "--all", site=folder).stdout.strip() == \
        "Tried again: 0 messages, 0 posts"
