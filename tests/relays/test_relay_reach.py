"""Reach, measured: a hub and two relays (fr; pt and es) with lowband and postal
readers in four languages, one What's New, the translators answering at set
times (French after 2 hours, Portuguese after 6, Spanish never). For each
reader: whether the publication reached them, in which language, by which
channel, and how long after it left the hub. Target: every reader whose
translator answered gets their language as soon as their sheet is complete;
everyone gets the publication by the deadline (3 days).

Time is an argument: the hub's signed messages pass through each relay's real
pipeline, and the relays stage runs as `listserv serve` runs it, at the
moments given. Run with `-s` to see the table.
"""

from __future__ import annotations

from datetime import timedelta

from relaykit import (
    HUB_DOMAIN,
    SECRET,
    add_recipients,
    outgoing,
    run_pipeline,
    store_publication,
    whatsnew_payload,
    write_relay_site,
)

from listserv.site.folder import Site
from relays import dispatch, hub, sheets, translation

READERS = {
    "relay-a": [("ana@example.org", "lowband", "fr"), ("tom@example.org", "lowband", "en"),
                ("Moussa Traoré", "postal", "fr")],
    "relay-b": [("rui@example.org", "lowband", "pt"), ("lucia@example.org", "lowband", "es"),
                ("Joana Silva", "postal", "pt"), ("Pedro Ruiz", "postal", "es")],
}
ANSWERS = {"fr": timedelta(hours=2), "pt": timedelta(hours=6)}  # es: no answer
DEADLINE = timedelta(days=3)


def make_relays(tmp_path, now) -> dict[str, Site]:
    relays = {}
    for name, languages in (("relay-a", ("fr",)), ("relay-b", ("pt", "es"))):
        site = Site(write_relay_site(tmp_path / name, name, languages=languages,
                                     translators={lang: f"tr-{lang}@example.org"
                                                  for lang in languages}))
        add_recipients(site, now, *[
            {"who": who, "profile": profile, "language": language,
             **({"postal_address": "BP 1; Ville", "country": "ML"} if profile == "postal"
                else {})} for who, profile, language in READERS[name]])
        relays[name] = site
    return relays


def step(site: Site, at) -> None:
    with site.db.atomic():
        translation.prepare_received(site.db, site, at)
        translation.expire_due(site.db, site, at)
        while dispatch.dispatch_ready(site.db, site, at):
            pass


def answer(site: Site, language: str, at) -> None:
    row = site.db.execute("SELECT id FROM translation_sheets WHERE language = ?",
                          [language]).fetchone()
    lines = [f"[{n}] ({language}) {source}" for n, source in site.db.execute(
        "SELECT sheet_number, source FROM translation_segments WHERE language = ? AND "
        "status = 'open' ORDER BY sheet_number", [language])]
    with site.db.atomic():
        sheets.submit_file(site.db, site, row[0], "\n".join(lines) + "\n", "translator", at)


def copies(site: Site) -> dict[str, str]:
    """Reader -> the language of the copy queued for them (lowband or postal)."""
    found = {recipient: ref.split(":")[3] for recipient, ref in site.db.execute(
        "SELECT recipient, ref FROM deliveries WHERE ref LIKE 'relay-lowband:%'")}
    found.update({name: language for name, language in site.db.execute(
        "SELECT l.name, b.language FROM postal_labels l JOIN postal_batches b "
        "ON b.id = l.batch_id")})
    return found


def test_every_reader_gets_their_language_when_their_sheet_is_complete_and_all_by_the_deadline(
        site, tmp_path, now):
    relays = make_relays(tmp_path, now)
    with site.db.atomic():
        for name in relays:
            (tmp_path / f"{name}.key").write_text(SECRET + "\n")
            hub.add_relay(site.db, name, address=f"relay@{name}.example.org",
                          secret_file=tmp_path / f"{name}.key", now=now - timedelta(days=1))
        store_publication(site.db, whatsnew_payload(), now)
        hub.send_publications(site.db, site, now)
    for name, relay in relays.items():
        ((_, raw),) = outgoing(site, f"relay:whatsnew:17:{name}")
        run_pipeline(relay, raw, now, [f"relay@{name}.example.org"],
                     f"listserv-bounces@{HUB_DOMAIN}")

    events = sorted([(now + delay, "answer", lang) for lang, delay in ANSWERS.items()]
                    + [(now + timedelta(minutes=m), "tick", "") for m in (0, 1)]
                    + [(now + DEADLINE + timedelta(minutes=1), "tick", "")])
    reached: dict[str, tuple[str, str, timedelta]] = {}
    for at, what, language in events:
        for name, relay in relays.items():
            if what == "answer" and language in relay.settings.relay.languages:
                answer(relay, language, at)
            step(relay, at)
            for reader, copy_language in copies(relay).items():
                reached.setdefault(reader, (name, copy_language, at - now))

    rows = []
    for name, readers in READERS.items():
        for who, profile, language in readers:
            relay_name, got, delay = reached.get(who, (name, "-", None))
            rows.append((who, name, profile, language, got, delay))
    print("\nreader               relay    channel  wants  got  after")
    for who, name, profile, language, got, delay in rows:
        print(f"{who:<20} {name:<8} {profile:<8} {language:<6} {got:<4} {delay}")
    share = sum(1 for r in rows if r[5] is not None) / len(rows)
    own = sum(1 for r in rows if r[4] == r[3]) / len(rows)
    print(f"received: {share:.0%}; in their own language: {own:.0%}")

    assert share == 1.0 and own == 1.0
    for who, name, profile, language, got, delay in rows:
        if language in ANSWERS:  # their translator answered: at once
            assert delay == ANSWERS[language], (who, delay)
        elif language == "en":  # the original: as soon as it arrived
            assert delay == timedelta(0), (who, delay)
        else:  # no answer: by the deadline, with what there is
            assert delay <= DEADLINE + timedelta(minutes=1), (who, delay)
