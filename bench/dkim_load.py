"""DKIM on the fan-out path: the signed workloads' sites, ceilings and signing cost.

- `site_config(kind)` is what `make_site` changes in listserv.toml: `plain`
  turns off the DKIM that `listserv init` turns on; `dkim` keeps it (RSA-2048,
  the selector init wrote); `site` keeps it and sets `[web] url` to an https
  address, which makes every copy personal (its own List-Unsubscribe lines,
  one recipient per transaction, a VERP sender, signed per copy), with the
  web server on a free loopback port.
- `signed_jobs` reads back from the server's store what it handed over, as
  ceiling jobs (sender, recipients, unsigned bytes): for `dkim`, the stored
  bodies as they go out (Date and Message-ID kept, CRLF), grouped as the
  plain W1 ceiling groups them; for `site`, each copy as the server makes it
  (its unsubscribe lines on top of the body, its VERP sender), built with
  the server's own functions, untimed.
- `signing(kind, signer)` is the ceiling's `sign` step, on the clock: once
  per body (`dkim`) or once per copy (`site`), with the server's `Signer`
  (dkimpy, the same key, the same header list).
- `signing_cost` times one signature on a copy: RSA-2048 and Ed25519, the
  median of many.
Reads the site folder (settings, key files, the store); writes nothing.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path

from harness import DOMAIN, copies_and_recipients, free_port
from listserv.delivery.attempts import dated, personal_headers
from listserv.delivery.dkim import Signer, crlf, load_key, load_signer
from listserv.mail.tokens import verp_sender
from listserv.site.folder import Site

KINDS = ("plain", "dkim", "site")
WEB_URL = "https://lists.example.org"  # never fetched: it only goes into the copies


def site_config(kind: str) -> dict:
    """make_site's `config` for a workload kind."""
    if kind == "plain":
        return {"dkim": {"selector": '""'}}
    if kind == "site":
        return {"web": {"url": f'"{WEB_URL}"', "listen": f'"127.0.0.1:{free_port()}"'}}
    return {}


def site_signer(folder: Path) -> Signer:
    signer = load_signer(folder, Site(folder).settings)
    assert signer is not None, f"{folder}: [dkim] selector is empty"
    return signer


def signed_jobs(folder: Path, kind: str, batch_size: int) -> list:
    """Ceiling jobs (sender, recipients, bytes before signing) for `kind`."""
    now = time.time()
    if kind == "dkim":
        ready: dict[bytes, bytes] = {}  # one object per body, as the server keeps one
        jobs = []
        for sender, recipients, raw in copies_and_recipients(folder, batch_size):
            if raw not in ready:
                ready[raw] = crlf(dated(raw, DOMAIN, now))
            jobs.append((sender, recipients, ready[raw]))
        return jobs
    site = Site(folder)
    secret, url = site.secret, site.settings.web.url
    conn = sqlite3.connect(str(folder / "data" / "listserv.db"))
    try:
        bodies = {body_id: crlf(dated(raw, DOMAIN, now)) for body_id, raw in conn.execute(
            "SELECT id, raw FROM bodies WHERE ref LIKE 'post:%' AND personal = 1")}
        slug = {forum_id: name for forum_id, name in conn.execute("SELECT id, slug FROM forums")}
        jobs = []
        for row_id, body_id, forum_id, sender, recipient in conn.execute(
                "SELECT d.id, d.body_id, b.forum_id, d.sender, d.recipient FROM deliveries d "
                "JOIN bodies b ON b.id = d.body_id WHERE d.recipients IS NULL "
                "ORDER BY d.next_at, d.domain, d.body_id, d.id"):
            if body_id in bodies:
                prefix = personal_headers(secret, url, slug[forum_id], DOMAIN, recipient)
                jobs.append((verp_sender(secret, sender, row_id, DOMAIN), [recipient],
                             prefix + bodies[body_id]))
    finally:
        conn.close()
    return jobs


def signing(kind: str, signer: Signer):
    """The ceiling's sign step: `sign(data)` gives the bytes that go out."""
    if kind == "site":
        return lambda data: signer.sign(data) + data
    done: dict[bytes, bytes] = {}

    def once_per_body(data: bytes) -> bytes:
        signed = done.get(data)  # the same object for every job of a body: hashed once
        if signed is None:
            signed = done[data] = signer.sign(data) + data
        return signed

    return once_per_body


def signing_cost(folder: Path, data: bytes, rsa_count: int = 200,
                 ed25519_count: int = 1000) -> dict:
    """µs per signature of `data` (a copy as it goes out) with the site's RSA
    key and the Ed25519 key `listserv init` made, each alone in a Signer,
    the median of many (and the quartiles)."""
    settings = Site(folder).settings
    domain = settings.dkim.signing_domain(settings.domain)
    keys = {"rsa": (load_key(folder / settings.dkim.key_file, settings.dkim.selector or "s1",
                             "rsa"), rsa_count),
            "ed25519": (load_key(folder / settings.dkim.ed25519_key_file, "ed", "ed25519"),
                        ed25519_count)}
    result = {"bytes_signed": len(data)}
    for algorithm, (key, count) in keys.items():
        signer = Signer(domain, [key])
        signer.sign(data)  # warm: imports, caches
        times = []
        for _ in range(count):
            start = time.perf_counter()
            signer.sign(data)
            times.append(time.perf_counter() - start)
        quartiles = statistics.quantiles(times, n=4)
        result[algorithm] = {"signatures": count,
                             "median_us": round(statistics.median(times) * 1e6, 1),
                             "q1_us": round(quartiles[0] * 1e6, 1),
                             "q3_us": round(quartiles[2] * 1e6, 1)}
    return result
