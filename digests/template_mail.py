"""Editing templates by email: templates@D checks and previews, a reply activates.

Only mail from a `[site] secretariat` address is read; anything else is
logged and dropped (never answered: the From may be forged). A message with
templates attached (at most MAX_FILES; the file name is the template's
name, optionally with its language in front: `fr/welcome.txt`,
`fr-welcome.txt`, or a `Language: fr` line, else the site's default) is
checked (template_check.py); each attached text is kept as a version
('proposed' or 'refused'), and the answer gives every result with its
file:line errors and the rendered preview. When all pass, the answer's
Reply-To is templates+CODE@D: a random, single-use, expiring code (the
moderation token lifetime) which, replied to from a secretariat address,
activates those versions (checked again first). Writes
`template_versions`, `tokens`, the template folders (through
templating.py) and the outbound queue.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta

from digests.bulletin import code_in
from digests.mailing import render_for, send, site_address
from digests.slots import iso
from digests.template_check import check_source, editable_names
from digests.templating import activate, sha
from listserv.errors import TokenError
from listserv.mail.headers import decode_header_text
from listserv.mail.message import Parsed
from listserv.mail.text import decode_payload, text_body
from listserv.mail.tokens import issue_token, peek_token, use_token

log = logging.getLogger(__name__)

PURPOSE = "template-activation"
MAX_FILES = 5
_LANGUAGE_LINE = re.compile(r"^\s*(language|langue|idioma|lingua)\s*:\s*([a-z]{2,3})\b",
                            re.IGNORECASE | re.MULTILINE)


def handle_templates_mail(db, site, row: dict, parsed: Parsed | None, now: datetime) -> None:
    """The handler for templates@D and templates+CODE@D."""
    settings = site.settings
    if parsed is None or not parsed.answerable:
        log.info("message %s to templates: unreadable or automatic; ignored", row["id"])
        return
    sender = parsed.sender[1]
    if sender not in settings.site.secretariat:
        log.warning("message %s to templates from %s ignored: only the secretariat's "
                    "addresses may send templates", row["id"], sender)
        return
    code = code_in(row, site_address(site, "templates"))
    if code:
        confirm(db, site, code, sender, parsed, row["id"], now)
    else:
        propose(db, site, sender, parsed, row["id"], now)


def attached_templates(parsed: Parsed, languages: tuple[str, ...],
                       default: str) -> list[tuple[str, str, str]]:
    """(language, name, text) of each template attached to the message."""
    said = _LANGUAGE_LINE.search(text_body(parsed.message)[:5000])
    words = re.findall(r"\b([a-z]{2})\b", parsed.subject.lower())
    fallback = (said.group(2).lower() if said and said.group(2).lower() in languages else
                next((w for w in words if w in languages), default))
    found = []
    for part in parsed.message.walk():
        if part.is_multipart() or not part.get_filename():
            continue
        filename = decode_header_text(part.get_filename()).strip().replace("\\", "/")
        language, name = _split_name(filename, languages, fallback)
        found.append((language, name, decode_payload(part)))
        if len(found) >= MAX_FILES:
            break
    return found


def _split_name(filename: str, languages: tuple[str, ...], fallback: str) -> tuple[str, str]:
    folder, _, base = filename.rpartition("/")
    folder = folder.rpartition("/")[2]
    if folder in languages:
        return folder, base
    match = re.match(r"^([a-z]{2,3})[-_](.+)$", base)
    if match and match.group(1) in languages and match.group(2) in editable_names():
        return match.group(1), match.group(2)
    return fallback, base


def propose(db, site, sender: str, parsed: Parsed, row_id: int, now: datetime) -> None:
    settings = site.settings
    results, versions = [], []
    for language, name, text in attached_templates(parsed, settings.site.languages,
                                                   settings.site.default_language):
        checked = check_source(site, language, name, text)
        status = "proposed" if checked.ok else "refused"
        version = db["template_versions"].insert({
            "language": language, "name": name[:100], "source": text, "sha": sha(text),
            "status": status, "via": "email", "by": sender,
            "error": "\n".join(checked.errors)[:2000], "created_at": iso(now)}).last_pk
        versions.append(version)
        results.append({"label": checked.label, "ok": checked.ok, "errors": checked.errors,
                        "preview": checked.preview, "version": version})
        log.info("template %s sent by %s as version %s: %s", checked.label, sender, version,
                 "passes its check" if checked.ok else checked.errors[0])
    confirm_address, expires = "", ""
    if results and all(r["ok"] for r in results):
        lifetime = settings.moderation.token_seconds
        token = issue_token(db, PURPOSE, forum_id=None, address=sender,
                            data={"versions": versions}, now=now, lifetime_seconds=lifetime)
        confirm_address = site_address(site, "templates").replace("@", f"+{token}@")
        expires = (now + timedelta(seconds=lifetime)).strftime("%Y-%m-%d %H:%M")
    subject, text = render_for(site, "template-check.txt", settings.site.default_language,
                               results=results, confirm_address=confirm_address,
                               expires=expires, sender=sender)
    send(db, site, to=sender, subject=subject, text=text, now=now, ref=f"reply:{row_id}",
         sender=site_address(site, "templates"), reply_to=confirm_address,
         in_reply_to=parsed.message_id)


def confirm(db, site, code: str, sender: str, parsed: Parsed, row_id: int,
            now: datetime) -> None:
    """A secretariat's reply to templates+CODE@D: activate the proposed versions once."""
    results, outcome = [], "activated"
    try:
        token = peek_token(db, code, PURPOSE)
        use_token(db, code, PURPOSE, now)
    except TokenError as error:
        text = str(error)
        outcome = "used" if "already" in text else ("expired" if "expired" in text
                                                     else "unknown")
    else:
        for version in token["data"]["versions"]:
            row = db["template_versions"].get(version)
            checked = check_source(site, row["language"], row["name"], row["source"])
            label = f"{row['language']}/{row['name']}"
            if not checked.ok or row["status"] != "proposed":
                outcome = "refused"
                db["template_versions"].update(version, {"status": "refused",
                                                         "error": "\n".join(checked.errors)})
                results.append({"label": label, "version": version,
                                "errors": checked.errors or ["no longer waiting"]})
                continue
            activate(db, site, row["language"], row["name"], row["source"], via="email",
                     by=sender, now=now, version_id=version)
            results.append({"label": label, "version": version, "errors": []})
    log.info("template activation by %s: %s", sender, outcome)
    subject, text = render_for(site, "template-activated.txt",
                               site.settings.site.default_language, outcome=outcome,
                               results=results, sender=sender)
    send(db, site, to=sender, subject=subject, text=text, now=now, ref=f"reply:{row_id}",
         sender=site_address(site, "templates"), in_reply_to=parsed.message_id)
