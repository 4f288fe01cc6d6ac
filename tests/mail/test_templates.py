"""The shipped templates: every one renders in every language, none is missing."""

from __future__ import annotations

import pytest

from digests.samples import mail_samples
from listserv.delivery.notify import site_context
from listserv.mail.templates import render, render_mail
from listserv.site import forums
from listserv.site.resources import shipped_dir

SHIPPED = shipped_dir("templates")
LANGUAGES = ("en", "fr", "es", "pt")
CORE = ("help.txt", "command-results.txt", "confirm-subscribe.txt", "confirm-unsubscribe.txt",
        "welcome.txt", "goodbye.txt", "token-invalid.txt", "subscription-pending.txt",
        "notice-rejected.txt", "post-refused.txt", "charter.txt")
CODES = ("help-sent", "confirm-sent", "already-member", "pending", "throttled",
         "leave-confirm-sent", "not-member", "set-done", "bad-value", "set-usage",
         "index-empty", "get-usage", "get-none", "index-sent", "get-sent", "search-sent",
         "search-none", "search-usage")


def names(language: str) -> set[str]:
    return {path.name for path in (SHIPPED / language).iterdir() if path.is_file()}


def result(code: str, setting: str = "mode", value: str = "digest") -> dict:
    return {"line": f"command for {code}", "code": code, "value": value, "setting": setting,
            "ignored": ["please"]}


def contexts(site, forum) -> dict[str, list[dict]]:
    """Sample data for each mail template, covering each of its branches."""
    base = {**site_context(site, forum), "address": "ana@example.org"}
    languages = ["en", "fr", "es", "pt"]
    settings = {"mode": "digest", "profile": "lowband", "member_language": "fr"}
    return {
        "help.txt": [{**base, "languages": languages}],
        "command-results.txt": [
            {**base, "languages": languages, "unknown": ["hello there"],
             "results": [result(code) for code in CODES]},
            {**base, "languages": languages, "unknown": [],
             "results": [result("set-done", "profile", "lowband"),
                         result("set-done", "language", "pt"),
                         result("bad-value", "language", "zz")]}],
        "confirm-subscribe.txt": [
            {**base, **settings, "confirm_address": "peace-confirm+abc@lists.example.org",
             "charter": "THE CHARTER", "expires": "2026-11-30 09:00 UTC"},
            {**base, "mode": "each", "profile": "email", "member_language": "en",
             "confirm_address": "peace-confirm+abc@lists.example.org", "charter": "",
             "expires": "2026-11-30 09:00 UTC"}],
        "confirm-unsubscribe.txt": [
            {**base, "confirm_address": "peace-confirm+abc@lists.example.org",
             "expires": "2026-11-30 09:00 UTC"}],
        "welcome.txt": [
            {**base, **settings, "member_name": "Ana", "charter_accepted_at": "2026-11-23 09:00"},
            {**base, "mode": "nomail", "profile": "email", "member_language": "es",
             "member_name": "", "charter_accepted_at": ""}],
        "goodbye.txt": [{**base, "how": "one-click", "rejoin_address": ""},
                        {**base, "how": "one-click",
                         "rejoin_address": "peace-confirm+abc@lists.example.org"}],
        "token-invalid.txt": [
            *({**base, "problem": problem, "reason": problem}
              for problem in ("used", "expired", "wrong-address", "wrong-forum", "unknown")),
            {**site_context(site, forum), "reason": "this confirmation code is not known here"}],
        "subscription-pending.txt": [{**base, "charter_accepted": True},
                                     {**base, "charter_accepted": False}],
        "notice-rejected.txt": [{**base, "subject": "Water", "reason": "Off topic"},
                                {**base, "subject": "", "reason": ""}],
        "post-refused.txt": [{**base, "subject": "Water", "reason": "members only"}],
        "bounce-warning.txt": [
            {**base, "number": n, "warnings": 3, "last": n == 3, "score": 5,
             "confirm_address": "peace-confirm+abc@lists.example.org", "removal": "2026-12-21"}
            for n in (1, 3)],
        "bounce-enabled.txt": [base],
        "bounce-summary.txt": [
            {**base, "owner": "peace-owner@lists.example.org",
             "disabled": [{"address": "ben@example.org", "at": "2026-11-23T09:00:00+00:00",
                           "detail": "score 5"}],
             "removed": [{"address": "cleo@example.org", "at": "2026-11-22T09:00:00+00:00",
                          "detail": "after 3 notices"}]},
            {**base, "owner": "peace-owner@lists.example.org", "disabled": [], "removed": [
                {"address": "cleo@example.org", "at": "2026-11-22T09:00:00+00:00",
                 "detail": ""}]}],
        **moderation_samples(base),
        **relay_samples(base),
        **mail_samples(site),  # digests/: What's New, initiatives, digests, template edits
    }



READER_RESULTS = [("set language pt", "set-language", "pt"), ("set budget 3000", "set-budget",
                                                                 "3000"),
                  ("unsubscribe", "leave-confirm-sent", ""), ("confirm", "left", ""),
                  ("unsubscribe", "not-reader", ""), ("set language de", "bad-language", "de"),
                  ("set budget 9", "bad-budget", "9"), ("set colour", "set-usage", ""),
                  ("confirm", "token-unknown", ""), ("confirm", "token-used", ""),
                  ("confirm", "token-expired", ""), ("confirm", "token-address", "")]


def relay_samples(base: dict) -> dict[str, list[dict]]:
    """The relays/ templates: translation sheets and answers, lowband and postal copies."""
    field = lambda text, original="": {"text": text, "original": original}  # noqa: E731
    entry = {"ref": "INIT-42", "title": field("A new well"), "text": field("Dug by all.", "en"),
             "link": "https://example.org/well", "more": "L1", "link_ref": "L2",
             "region": "Sahel", "path": "geocultural", "forum": "sahel-network",
             "author": "Ana", "date": "", "when": "", "path_in_payload": "sections.0.items.0",
             "full": field("Dug by all, over three months.", "en"), "trimmed": True}
    view = {"key": "whatsnew:17", "kind": "whatsnew", "number": 17, "language": "fr",
            "original_language": "en", "title": field("Quoi de neuf 17"), "forum": "",
            "sections": [{"heading": field("Régions"), "subheading": field("Sahel", "en"),
                          "entries": [entry, {**entry, "link": "", "link_ref": "",
                                              "region": "", "forum": "", "author": ""}]}],
            "untranslated": ["en"], "example_ref": "L1", "period": {}}
    digest = {**view, "kind": "digest", "forum": "peace", "untranslated": [],
              "sections": [{"heading": field(""), "subheading": field(""), "entries": []}]}
    relay = {**base, "commands": "listserv@relay.example.org",
             "whatsnew": "whatsnew@relay.example.org", "domain": "relay.example.org"}
    sheet = {**base, "sheet": {"id": 4, "language": "fr", "deadline": "2026-11-26 09:00 UTC"},
             "publication": {"key": "whatsnew:17", "title": "What's New 17", "language": "en"},
             "segments": [{"number": 1, "source_language": "en", "source": "Water\nand land",
                           "draft": "Eau"}, {"number": 3, "source_language": "fr",
                                             "source": "Puits", "draft": None}],
             "source_languages": ["en", "fr"], "numbers_by_language": {"en": [1], "fr": [3]}}
    outcome = {"sheet": 4, "language": "fr", "accepted": [1, 2], "unchanged": [3],
               "unknown": [9], "missing": [4], "complete": False, "late": False}
    hit = {"ref": "L2", "url": "https://example.org/well", "item": entry, "view": view}
    reader = {**relay, "address": "ana@example.org", "join": "whatsnew-join@relay.example.org",
              "languages": ["en", "fr"], "min_budget": 1500, "max_budget": 10000000}
    return {
        "translation-sheet.txt": [sheet, {**sheet, "segments": [], "numbers_by_language": {}}],
        "translation-reply.txt": [
            {**sheet, "outcome": outcome, "malformed": False},
            {**sheet, "outcome": {**outcome, "accepted": [], "unchanged": [], "unknown": [],
                                  "missing": [1, 3]}, "malformed": True},
            {**sheet, "outcome": {**outcome, "complete": True, "missing": []},
             "malformed": False},
            {**sheet, "outcome": {**outcome, "late": True}, "malformed": False}],
        "lowband-publication.txt": [{**relay, "view": view}, {**relay, "view": digest}],
        "lowband-get.txt": [{**relay, "found": [hit], "missing": ["L99"], "asked": True},
                            {**relay, "found": [], "missing": ["L99"], "asked": True},
                            {**relay, "found": [], "missing": [], "asked": False}],
        "postal-master.txt": [{**relay, "view": view, "postal": "Centre, BP 3, Dakar"},
                              {**relay, "view": digest, "postal": ""}],
        "relay-reader-results.txt": [
            {**reader, "results": [{"line": line, "code": code, "value": value}
                                   for line, code, value in READER_RESULTS]}],
        "relay-reader-confirm.txt": [{**reader, "confirm_address":
                                      "listserv+abc@relay.example.org",
                                      "expires": "2026-11-30 09:00 UTC"}],
        "relay-upstream-refused.txt": [{**base, "subject": "Report", "size": 3000000,
                                        "limit": 2097152}, {**base, "subject": "",
                                                            "size": 3, "limit": 2}],
    }


def moderation_samples(base: dict) -> dict[str, list[dict]]:
    """The moderation/ templates: notices, replies to decisions, reminders."""
    decide = {"address": "peace-confirm+abc@lists.example.org",
              "expires": "2026-12-07 09:00 UTC"}
    hold = {"id": 7, "reason": "zoe@example.net is not a member", "since": "2026-11-23 09:00 UTC"}
    what = {"kind": "hold", "id": 7, "status": "approved", "sender": "zoe@example.net",
            "subject": "Water", "decided_by": "fac@example.org", "decided_via": "email",
            "decided_at": "2026-11-23 10:00 UTC"}
    item = {"id": 7, "forum": "peace", "sender": "zoe@example.net", "subject": "Water",
            "reason": "not a member", "since": "2026-11-20 09:00 UTC", "days": 3,
            "decide": decide}
    failed = {"recipient": "zoe@example.net", "ref": "post:17", "subject": "Water",
              "reason": "gave up after 5d: 451 4.2.1 Mailbox busy"}
    request = {"id": 2, "address": "dora@example.org", "name": "Dora", "region": "Sahel",
               "language": "fr", "mode": "each", "profile": "email",
               "confirmed": "2026-11-22 09:00 UTC", "charter": "2026-11-22 09:00 UTC",
               "expires": "2026-12-06 09:00 UTC"}
    reply = {**base, "what": what, "decision": "", "reason": "", "told": False, "tried": "",
             "address": "fac@example.org"}
    return {
        "moderation-held.txt": [
            {**base, "hold": hold, "sender": "zoe@example.net", "sent_from": "Zoe <zoe@example.net>",
             "member": False, "subject": "Water", "lines": ["Clean water", "for all"], "more": 3,
             "decide": decide},
            {**base, "hold": hold, "sender": "", "sent_from": "", "member": True, "subject": "",
             "lines": [], "more": 0, "decide": None}],
        "moderation-reply.txt": [
            *({**reply, "outcome": "done", "decision": decision, "told": told, "reason": "Off topic"}
              for decision, told in (("approve", False), ("reject", True), ("reject", False),
                                     ("accept-always", False), ("ban", False), ("discard", False))),
            *({**reply, "outcome": outcome} for outcome in (
                "decided", "cannot", "expired", "not-facilitator", "unauthenticated",
                "wrong-forum", "conflict", "none")),
            {**reply, "outcome": "done", "decision": "approve",
             "what": {**what, "kind": "request", "subject": ""}}],
        "moderation-summary.txt": [
            {**base, "posts": [item, {**item, "decide": None, "subject": ""}],
             "requests": [item], "expire_days": 14},
            {**base, "posts": [], "requests": [item], "expire_days": 14}],
        "delivery-failed-poster.txt": [
            {**base, "subject": "Water", "count": 3, "posted": "2026-11-23",
             "give_up_days": 5, "give_up_hours": 120},
            {**base, "subject": "", "count": 1, "posted": "2026-11-23",
             "give_up_days": 0, "give_up_hours": 6}],
        "delivery-failed-summary.txt": [
            {**base, "items": [failed, {**failed, "subject": ""}], "total": 2, "more": 0,
             "give_up_days": 5, "give_up_hours": 120},
            {**base, "items": [failed], "total": 1, "more": 0, "give_up_days": 0,
             "give_up_hours": 6},
            {**base, "items": [failed], "total": 51, "more": 50, "give_up_days": 5,
             "give_up_hours": 120}],
        "delivery-failed-site.txt": [
            {**base, "items": [{**failed, "ref": "reply:42", "subject": ""}], "total": 1,
             "more": 0, "give_up_days": 5, "give_up_hours": 120},
            {**base, "items": [failed], "total": 60, "more": 59, "give_up_days": 0,
             "give_up_hours": 2}],
        "moderation-escalation.txt": [{**base, "items": [item], "days": 7}],
        "moderation-expired.txt": [{**base, "subject": "Water", "days": 14},
                                   {**base, "subject": "", "days": 14}],
        "moderation-request.txt": [{**base, "request": request, "decide": decide},
                                   {**base, "request": {**request, "name": "", "charter": ""},
                                    "decide": None}],
        "moderation-decision-refused.txt": [
            {**base, "what": what, "address": "zoe@example.net", "sender_name": "Zoe",
             "decision": "approve", "at": "2026-11-23 09:00 UTC"},
            {**base, "what": {**what, "kind": "request", "subject": ""},
             "address": "zoe@example.net", "sender_name": "", "decision": "",
             "at": "2026-11-23 09:00 UTC"}],
        "moderation-request-refused.txt": [
            {**base, "reason": "Not a farmer", "expired": False, "days": 3},
            {**base, "reason": "", "expired": True, "days": 14}],
    }


@pytest.fixture
def forum(site, now):
    return forums.create(site.db, "peace", title="Peace and dialogue", path="thematic", now=now,
                         description="Sharing what works for peace.")


def test_every_language_ships_the_same_set_of_templates():
    english = names("en")
    assert set(CORE) <= english
    for language in LANGUAGES[1:]:
        assert names(language) == english, language


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_mail_template_renders_with_sample_data_in_every_language(site, forum, language):
    for name, samples in contexts(site, forum).items():
        for policy in ("members", "moderated", "announce"):
            for sample in samples:
                sample = {**sample, "forum": {**sample.get("forum", {}), "policy": policy}}
                subject, body = render_mail(None, name, language, **sample)
                assert subject and "\n" not in subject and "{" not in subject, name
                assert body.strip() and "{{" not in body and "{%" not in body, name
        if language != "en":
            assert render_mail(None, name, language, **samples[0]) != \
                render_mail(None, name, "en", **samples[0]), f"{name} untranslated"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_command_result_has_its_own_wording(site, forum, language):
    sample = contexts(site, forum)["command-results.txt"][0]
    _, body = render_mail(None, "command-results.txt", language, **sample)
    for code in CODES:
        assert f"  {code}\n" not in body, f"{code} falls through in {language}"
    assert "please" in body and "hello there" in body


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_charter_is_plain_text_in_every_language(language):
    text = (SHIPPED / language / "charter.txt").read_text(encoding="utf-8")
    assert not text.lower().startswith("subject:")
    assert "{{" not in text and "{%" not in text
    assert 1000 < len(text) < 4000
    assert render(None, "charter.txt", language).strip() == text.strip()


def test_the_charters_differ_by_language():
    texts = {lang: (SHIPPED / lang / "charter.txt").read_text(encoding="utf-8")
             for lang in LANGUAGES}
    assert len(set(texts.values())) == len(LANGUAGES)


def test_a_reply_in_french_speaks_french(site, forum):
    sample = contexts(site, forum)["confirm-subscribe.txt"][0]
    subject, body = render_mail(None, "confirm-subscribe.txt", "fr", **sample)
    assert "confirmer" in subject.lower()
    assert "répondre" in body and "THE CHARTER" in body
