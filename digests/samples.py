"""Sample data for every template the server fills in, to check and preview it.

`context(site, name, language)` gives what the code passes to template
`name` (same names, same shapes, plausible values), or None for a template
this module does not know (another package's), which is then checked more
leniently. `templates check`, the checks of an edit by email and the tests
of the shipped templates all use these. Reads the settings; writes nothing.
"""

from __future__ import annotations

from digests.mailing import context_for
from listserv.delivery.notify import site_context

FORUM = {"id": 0, "slug": "peace", "title": "Peace and dialogue", "path": "thematic",
         "language": "en", "policy": "members", "description": "Sharing what works for peace."}
LANGUAGES = ["en", "fr", "es", "pt"]
CONFIRM = "peace-confirm+0123456789abcdef0123456789abcdef@lists.example.org"
INITIATIVE = {
    "id": 42, "ref": "INIT-42", "title": "A seed bank for twenty families",
    "text": "We opened a seed bank in Kayes with twenty families. It keeps forty varieties "
            "of millet and sorghum, and lends them at sowing time.",
    "link": "https://example.org/seeds", "region": "Mali", "path": "geocultural",
    "forum": "sahel-network", "language": "fr", "happens": "every Saturday",
    "reporter": "moussa@example.org", "reporter_name": "Moussa", "status": "accepted",
    "reason": "", "message_id": 1, "ack_id": "", "created_at": "2026-11-20T09:00:00+00:00",
    "updated_at": "2026-11-20T09:00:00+00:00", "decided_by": "policy",
    "decided_at": "2026-11-20T09:00:00+00:00", "accepted_at": "2026-11-20T09:00:00+00:00",
    "publication": None}
LABELS = {"title": "What's New", "geocultural": "Regions and places",
          "socioprofessional": "Networks", "thematic": "Themes", "other": "Elsewhere"}


def _item(number: int, link: str, language: str) -> dict:
    return {"ref": f"INIT-{number}", "title": f"Initiative {number}", "language": language,
            "text": "Women farmers share seeds and prices by text message…", "link": link,
            "lines": ["Women farmers share seeds and prices by text", "message…"],
            "region": "Sahel", "path": "geocultural", "forum": "", "when": "March"}


def _sections() -> list[dict]:
    return [{"heading": "Regions and places", "subheading": "Sahel", "path": "geocultural",
             "items": [_item(1, "https://example.org/a", "fr"), _item(2, "", "en")]},
            {"heading": "Themes", "subheading": "", "path": "thematic",
             "items": [_item(3, "", "pt")]}]


def _core(site, name: str) -> dict | None:
    base = {**site_context(site, FORUM), "address": "ana@example.org"}
    result = {"line": "set mode digest", "code": "set-done", "value": "digest",
              "setting": "mode", "ignored": []}
    samples = {
        "help.txt": {**base, "languages": LANGUAGES},
        "command-results.txt": {**base, "languages": LANGUAGES, "unknown": ["hello"],
                                "results": [result]},
        "confirm-subscribe.txt": {**base, "mode": "digest", "profile": "email",
                                  "member_language": "fr", "confirm_address": CONFIRM,
                                  "charter": "THE CHARTER", "expires": "2026-11-30 09:00 UTC"},
        "confirm-unsubscribe.txt": {**base, "confirm_address": CONFIRM,
                                    "expires": "2026-11-30 09:00 UTC"},
        "welcome.txt": {**base, "mode": "each", "profile": "email", "member_language": "en",
                        "member_name": "Ana", "charter_accepted_at": "2026-11-23 09:00"},
        "goodbye.txt": {**base, "how": "email",
                        "rejoin_address": "peace-join+abc@lists.example.org"},
        "token-invalid.txt": {**base, "problem": "used", "reason": "used"},
        "subscription-pending.txt": {**base, "charter_accepted": True},
        "notice-rejected.txt": {**base, "subject": "Water", "reason": "Off topic"},
        "post-refused.txt": {**base, "subject": "Water", "reason": "members only"},
    }
    return samples.get(name)


def _ours(site, name: str) -> dict | None:
    issue = {"number": 17, "ref": "WN-17", "key": "whatsnew:17", "date": "2026-12-01",
             "start": "2026-11-15", "end": "2026-12-01"}
    issue_context = {"issue": issue, "sections": _sections(), "labels": LABELS,
                     "reader_language": "en", "full": False, "count": 3}
    reader = {"address": "ana@example.org", "languages": LANGUAGES}
    checked = [{"label": "fr/welcome.txt", "ok": True, "errors": [],
                "preview": "Subject: Bienvenue\n\nBonjour"},
               {"label": "en/help.txt", "ok": False, "preview": "",
                "errors": ["en/help.txt:3: unexpected end of template"]}]
    samples = {
        "initiative-ack.txt": {"initiative": INITIATIVE, "updated": False},
        "initiative-rejected.txt": {"initiative": INITIATIVE, "reason": "Not an initiative"},
        "initiative-review.txt": {"initiative": INITIATIVE, "updated": False, "waiting": 3},
        "initiative-document.txt": {"initiative": {
            **{k: INITIATIVE[k] for k in ("ref", "title", "text", "link", "region", "path",
                                          "language")},
            "forum": "Sahel network", "when": "every Saturday", "publication": "whatsnew:17"}},
        "whatsnew-labels.txt": {},
        "whatsnew-issue.txt": issue_context,
        "whatsnew-issue.html": issue_context,
        "whatsnew-help.txt": reader,
        "whatsnew-confirm.txt": {**reader, "action": "subscribe", "profile": "email",
                                 "confirm_address": "whatsnew-confirm+abc@lists.example.org",
                                 "expires": "2026-11-30 09:00"},
        "whatsnew-results.txt": {**reader, "unknown": ["hello"],
                                 "results": [{"line": "get WN-17", "code": "get-sent",
                                              "value": "WN-17"}]},
        "whatsnew-index.txt": {"issues": [{"number": 17, "ref": "WN-17", "count": 12,
                                           "title": "What's New no. 17", "date": "2026-12-01"}]},
        "digest-issue.txt": {"forum": FORUM, "addresses": site_context(site, FORUM)["addresses"],
                             "digest": {"number": 12, "key": "digest:peace:12", "volume": 1,
                                        "date": "2026-11-23", "count": 2},
                             "posts": [{"number": 1, "subject": "Water", "author": "Ana",
                                        "date": "Mon, 23 Nov 2026 09:00:00 +0000"},
                                       {"number": 2, "subject": "Re: Water", "author": "Ben",
                                        "date": "Mon, 23 Nov 2026 10:00:00 +0000"}],
                             "plain": True},
        "template-check.txt": {"results": checked, "confirm_address": "",
                               "expires": "2026-12-07 09:00", "sender": "sec@example.org"},
        "template-activated.txt": {"outcome": "activated", "sender": "sec@example.org",
                                   "results": [{"label": "fr/welcome.txt", "version": 3,
                                                "errors": []}]},
        "template-broken.txt": {"label": "en/help.txt", "version": 4,
                                "errors": ["en/help.txt:3: unexpected end of template"],
                                "fallback": "version 3 of 2026-11-20"},
    }
    found = samples.get(name)
    return None if found is None else context_for(site, **found)


def context(site, name: str, language: str) -> dict | None:
    """What template `name` is given, with sample values; None if unknown here."""
    return _core(site, name) or _ours(site, name)


def variants(site, name: str) -> list[dict]:
    """Several samples for a template, covering its branches (for the tests)."""
    first = context(site, name, "en")
    if first is None:
        return []
    more = []
    if name == "initiative-ack.txt":
        more = [{**first, "updated": True, "initiative": {**INITIATIVE, "status": "review",
                                                          "link": "", "region": ""}}]
    elif name in ("whatsnew-issue.txt", "whatsnew-issue.html"):
        more = [{**first, "full": True}, {**first, "sections": [], "count": 0}]
    elif name == "whatsnew-confirm.txt":
        more = [{**first, "action": "unsubscribe", "profile": "lowband"}]
    elif name == "whatsnew-results.txt":
        codes = ("confirm-sent", "subscribed", "unsubscribed", "get-sent", "index-sent",
                 "get-none", "get-usage", "help-sent", "not-here", "bad-value", "throttled",
                 "token-unknown", "token-used", "token-expired", "token-address",
                 "search-sent", "search-none", "search-usage")
        more = [{**first, "results": [{"line": f"line {c}", "code": c, "value": "x"}
                                      for c in codes]}]
    elif name == "whatsnew-index.txt":
        more = [{**first, "issues": []}]
    elif name == "digest-issue.txt":
        more = [{**first, "plain": False}]
    elif name == "template-check.txt":
        more = [{**first, "results": first["results"][:1],
                 "confirm_address": "templates+abc@lists.example.org"}]
    elif name == "template-activated.txt":
        more = [{**first, "outcome": outcome, "results": []}
                for outcome in ("used", "expired", "unknown", "refused")]
        more.append({**first, "outcome": "refused", "results": [
            {"label": "en/help.txt", "version": 0, "errors": ["en/help.txt:1: broken"]}]})
    elif name == "template-broken.txt":
        more = [{**first, "fallback": ""}]
    elif name == "initiative-review.txt":
        more = [{**first, "updated": True, "waiting": 1}]
    return [first, *more]


def mail_samples(site) -> dict[str, list[dict]]:
    """Every mail template of this package with its samples (for the tests of
    the shipped templates)."""
    names = ("initiative-ack.txt", "initiative-rejected.txt", "initiative-review.txt",
             "initiative-document.txt", "whatsnew-issue.txt", "whatsnew-help.txt",
             "whatsnew-confirm.txt", "whatsnew-results.txt", "whatsnew-index.txt",
             "digest-issue.txt", "template-check.txt", "template-activated.txt",
             "template-broken.txt")
    return {name: variants(site, name) for name in names}
