"""The shipped templates: every one renders in every language, none is missing."""

from __future__ import annotations

import pytest

from listserv import forums
from listserv.notify import site_context
from listserv.resources import shipped_dir
from listserv.templates import render, render_mail

SHIPPED = shipped_dir("templates")
LANGUAGES = ("en", "fr", "es", "pt")
CORE = ("help.txt", "command-results.txt", "confirm-subscribe.txt", "confirm-unsubscribe.txt",
        "welcome.txt", "goodbye.txt", "token-invalid.txt", "subscription-pending.txt",
        "notice-rejected.txt", "post-refused.txt", "charter.txt")
CODES = ("help-sent", "confirm-sent", "already-member", "pending", "throttled",
         "leave-confirm-sent", "not-member", "set-done", "bad-value", "set-usage",
         "index-empty", "get-usage", "get-none")


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
        "goodbye.txt": [{**base, "how": "one-click"}],
        "token-invalid.txt": [
            *({**base, "problem": problem, "reason": problem}
              for problem in ("used", "expired", "wrong-address", "wrong-forum", "unknown")),
            {**site_context(site, forum), "reason": "this confirmation code is not known here"}],
        "subscription-pending.txt": [{**base, "charter_accepted": True},
                                     {**base, "charter_accepted": False}],
        "notice-rejected.txt": [{**base, "subject": "Water", "reason": "Off topic"},
                                {**base, "subject": "", "reason": ""}],
        "post-refused.txt": [{**base, "subject": "Water", "reason": "members only"}],
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
                sample = {**sample, "forum": {**sample["forum"], "policy": policy}}
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
