"""`/metrics` on the web listener: the site's figures in Prometheus' text
format, read from the store at scrape time, through a running serve."""

from __future__ import annotations

import urllib.error
import urllib.request

from helpers import free_port, listserv, make_site, query, running_server, send_mail, wait_until
from prometheus_client.parser import text_string_to_metric_families

POST = ("From: {sender}\nTo: peace@lists.example.org\nSubject: {subject}\n"
        "Message-ID: <{subject}@example.org>\n\nThe new well is running.\n")


def metrics_site(tmp_path, sink, metrics: bool = True):
    folder = make_site(tmp_path, sink)
    port = free_port()
    config = folder / "listserv.toml"
    text = config.read_text().replace('listen = "127.0.0.1:8080"', f'listen = "127.0.0.1:{port}"')
    if metrics:
        text = text.replace("metrics = false", "metrics = true")
    config.write_text(text)
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=folder)
    for address in ("ana@example.org", "ben@example.net", "chloe@example.org"):
        listserv("member", "add", "peace", address, "--preconfirmed", site=folder)
    return folder, f"http://127.0.0.1:{port}/metrics"


def scrape(url: str) -> dict[tuple, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_metrics_count_what_the_site_did_from_the_store(tmp_path, sink):
    folder, url = metrics_site(tmp_path, sink)
    with running_server(folder) as server:
        wait_until(lambda: _answers(url), 10, "the web listener")
        before = scrape(url)
        assert before[("listserv_messages_accepted_total", ())] == 0
        assert before[("listserv_queue_depth", (("status", "queued"),))] == 0
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  POST.format(sender="ana@example.org", subject="Wells"))
        send_mail(server.port, "zoe@example.com", ["peace@lists.example.org"],
                  POST.format(sender="zoe@example.com", subject="Offer"))  # held
        sink.wait_for(lambda s: len(s.messages_to("ben@example.net")) == 1, 20, "the post")
        wait_until(lambda: query(folder, "SELECT count(*) FROM deliveries WHERE status = "
                                         "'sent'")[0][0] >= 1, 20, "the sent rows")
        wait_until(lambda: scrape(url)[("listserv_posts_waiting", ())] == 1, 20, "the hold")
        after = scrape(url)
    assert after[("listserv_messages_accepted_total", ())] == 2
    assert after[("listserv_posts_held_total", ())] == 1
    sent = after[("listserv_deliveries_total", (("outcome", "sent"),))]
    assert sent >= 2  # ben and chloe, and the facilitators' notice if any
    assert after[("listserv_deliveries_total", (("outcome", "bounced"),))] == 0
    assert after[("listserv_bounces_total", ())] == 0
    assert after[("listserv_queue_oldest_age_seconds", ())] >= 0
    # Restarted, it counts the same: the figures are in the store, not in memory.
    with running_server(folder):
        wait_until(lambda: _answers(url), 10, "the web listener again")
        again = scrape(url)
    assert again[("listserv_messages_accepted_total", ())] == 2
    # Sent rows purged after keep_sent still count.
    listserv("purge", "--at", "2099-01-01T00:00:00+00:00", site=folder)
    assert query(folder, "SELECT count(*) FROM deliveries WHERE status = 'sent'")[0][0] == 0
    with running_server(folder):
        wait_until(lambda: _answers(url), 10, "the web listener once more")
        purged = scrape(url)
    assert purged[("listserv_deliveries_total", (("outcome", "sent"),))] == sent


def test_publications_are_counted_by_kind(tmp_path, sink):
    folder, url = metrics_site(tmp_path, sink)
    listserv("forum", "edit", "peace", "--digest", "daily", site=folder)
    listserv("member", "add", "peace", "dora@example.org", "--preconfirmed", "--mode",
             "digest", site=folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  POST.format(sender="ana@example.org", subject="Rain"))
        sink.wait_for_recipient("ben@example.net")
        listserv("digest", "send", "peace", site=folder)
        wait_until(lambda: _answers(url), 10, "the web listener")
        figures = scrape(url)
    assert figures[("listserv_publications_total", (("kind", "digest"),))] == 1


def test_without_metrics_the_listener_does_not_run(tmp_path, sink):
    folder, url = metrics_site(tmp_path, sink, metrics=False)
    with running_server(folder):
        assert not _answers(url)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False
