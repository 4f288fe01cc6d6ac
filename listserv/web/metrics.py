"""`/metrics`: the site's figures in Prometheus' text format, read at scrape time.

Everything is read from the store when Prometheus asks, with a connection
of its own (the web listener's thread), so the figures are the same whatever
process or restart recorded them, and serve keeps no counters in memory
(serve and its hand-over child would otherwise need prometheus-client's
multiprocess mode). Counters are counts of rows that are never deleted
(messages, holds, bounces, publications); sent deliveries, whose rows are
purged after `[site] keep_sent`, add the recipients retention.py recorded as
purged. Reads only; the registry is built per site, not at module level.
"""

from __future__ import annotations

import sqlite3
import time

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from listserv.site.retention import PURGED_SENT

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OUTCOMES = ("queued", "sending", "deferred", "sent", "bounced", "failed")


class StoreCollector:
    """A prometheus-client collector whose figures come from the site's database."""

    def __init__(self, db_path):
        self.db_path = db_path

    def describe(self):
        return []  # figures are read at collect time only

    def collect(self):
        conn = sqlite3.connect(str(self.db_path), timeout=5)
        try:
            conn.execute("PRAGMA query_only = ON")
            yield from self._families(conn, time.time())
        finally:
            conn.close()

    def _families(self, conn, now: float):
        one = lambda sql, *params: conn.execute(sql, params).fetchone()[0]  # noqa: E731
        accepted = CounterMetricFamily("listserv_messages_accepted",
                                       "Messages accepted by intake (SMTP 250), ever")
        accepted.add_metric([], one("SELECT count(*) FROM messages"))
        yield accepted
        messages = GaugeMetricFamily("listserv_messages", "Accepted messages by status",
                                     labels=["status"])
        for status, number in conn.execute("SELECT status, count(*) FROM messages "
                                           "GROUP BY status ORDER BY status"):
            messages.add_metric([status], number)
        yield messages
        held = CounterMetricFamily("listserv_posts_held", "Posts held for a facilitator, ever")
        held.add_metric([], one("SELECT count(*) FROM holds"))
        yield held
        waiting = GaugeMetricFamily("listserv_posts_waiting",
                                    "Held posts waiting for a facilitator's decision now")
        waiting.add_metric([], one("SELECT count(*) FROM holds WHERE status = 'held'"))
        yield waiting
        by_status = dict.fromkeys(OUTCOMES, 0)
        for status, number in conn.execute("SELECT status, coalesce(sum(size), 0) "
                                           "FROM deliveries GROUP BY status"):
            by_status[status] = number
        purged = conn.execute("SELECT value FROM meta WHERE key = ?", [PURGED_SENT]).fetchone()
        outcomes = CounterMetricFamily(
            "listserv_deliveries", "Recipients whose delivery ended, by outcome",
            labels=["outcome"])
        outcomes.add_metric(["sent"], by_status["sent"] + int(purged[0] if purged else 0))
        for outcome in ("bounced", "failed"):
            outcomes.add_metric([outcome], by_status[outcome])
        yield outcomes
        depth = GaugeMetricFamily("listserv_queue_depth",
                                  "Recipients in the outbound queue, by status",
                                  labels=["status"])
        for status in ("queued", "sending", "deferred"):
            depth.add_metric([status], by_status[status])
        yield depth
        oldest = one("SELECT min(created_at) FROM deliveries "
                     "WHERE status IN ('queued', 'deferred', 'sending')")
        age = GaugeMetricFamily("listserv_queue_oldest_age_seconds",
                                "Age of the oldest delivery still waiting (0: none waits)")
        age.add_metric([], max(now - oldest, 0.0) if oldest else 0.0)
        yield age
        bounces = CounterMetricFamily("listserv_bounces", "Bounces recorded, ever")
        bounces.add_metric([], one("SELECT count(*) FROM bounces"))
        yield bounces
        publications = CounterMetricFamily("listserv_publications",
                                           "Publications made (digests, What's New), ever",
                                           labels=["kind"])
        for kind, number in conn.execute("SELECT kind, count(*) FROM publications "
                                         "GROUP BY kind ORDER BY kind"):
            publications.add_metric([kind], number)
        yield publications


def registry_for(site) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(site.db_path))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
