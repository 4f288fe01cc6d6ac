"""Reading what GNU Mailman 3 exports of a list: members, their flags, settings.

What an operator can get out of a Mailman 3 list, and what each becomes:

- the members: `mailman members LIST` (one `Name <addr>` a line, names RFC
  2047 encoded when not ASCII), or the REST roster, `GET
  /3.1/lists/LIST/roster/member` (JSON: `entries` with `email`,
  `display_name`, `delivery_mode`, `moderation_action`, and, when the
  exporter added it from the member's preferences, `delivery_status`);
- digest members: `mailman members --digest any LIST` (mode `digest`), and
  in the roster any `*_digests` delivery mode;
- members who get no mail: `mailman members --nomail any LIST` (mode
  `nomail`), and in the roster a `delivery_status` other than `enabled`;
- moderators and owners: `mailman members --role moderator LIST` (and
  `--role owner`): they become the forum's facilitators;
- per-member moderation, from the roster's `moderation_action`: `accept`
  becomes the standing `accept` (never held), `hold` the standing `hold`
  (every post held), `discard` and `reject` the standing `ban`; `defer`
  (the list's default) nothing;
- the list's settings, `GET /3.1/lists/LIST/config` (JSON): its title,
  description, language, posting policy (from `default_member_action` and
  `default_nonmember_action`), subscription policy and digests.

Everything here is pure: text in, rows and settings out, with each line
that cannot be read named by file and number. The command line
(cli_import.py) writes the forum, its members, facilitators and standings.
Mailman 2.1's pickled config.pck is not read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from listserv.errors import ListservError
from listserv.site.member_files import parse_address_line

STANDINGS = {"accept": "accept", "hold": "hold", "discard": "ban", "reject": "ban"}
DIGEST_FREQUENCIES = {"daily": "daily", "weekly": "weekly", "monthly": "weekly",
                      "quarterly": "weekly", "yearly": "weekly"}


@dataclass
class Roster:
    """The members read, by address, with what Mailman said about each."""

    rows: dict[str, dict] = field(default_factory=dict)  # address -> import row
    lines: dict[str, int] = field(default_factory=dict)  # address -> line (or entry) number
    standings: dict[str, str] = field(default_factory=dict)  # address -> accept|hold|ban
    problems: list[str] = field(default_factory=list)


def read_addresses(text: str, source: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """`mailman members` output: (line, row) pairs and the problems by line."""
    rows, problems = [], []
    for number, line in enumerate(text.splitlines(), 1):
        row = parse_address_line(line)
        if row is None:
            continue
        if "@" not in row["address"] or " " in row["address"]:
            problems.append(f"{source} line {number}: '{row['address'][:80]}' is not an address")
            continue
        row["address"] = row["address"].lower()
        rows.append((number, row))
    return rows, problems


def read_roster(text: str, source: str) -> Roster:
    """The members file: `mailman members` lines, or the REST roster's JSON."""
    roster = Roster()
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        _read_json_roster(roster, stripped, source)
        return roster
    rows, roster.problems = read_addresses(text, source)
    for number, row in rows:
        if row["address"] not in roster.rows:
            roster.rows[row["address"]] = row
            roster.lines[row["address"]] = number
    return roster


def _read_json_roster(roster: Roster, text: str, source: str) -> None:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ListservError(f"{source}: not readable JSON: {error}") from None
    entries = data.get("entries", []) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise ListservError(f"{source}: expected Mailman's roster, a JSON object with "
                            f"'entries' (GET /3.1/lists/LIST/roster/member)")
    for number, entry in enumerate(entries, 1):
        where = f"{source} entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("email"), str):
            roster.problems.append(f"{where}: no 'email'")
            continue
        address = entry["email"].strip().lower()
        if "@" not in address or " " in address:
            roster.problems.append(f"{where}: '{address[:80]}' is not an address")
            continue
        row = {"address": address, "name": str(entry.get("display_name") or "")}
        if str(entry.get("delivery_mode", "regular")).endswith("_digests"):
            row["mode"] = "digest"
        if entry.get("delivery_status") not in (None, "", "enabled"):
            row["mode"] = "nomail"
        roster.rows.setdefault(address, row)
        roster.lines.setdefault(address, number)
        standing = STANDINGS.get(str(entry.get("moderation_action") or ""))
        if standing:
            roster.standings[address] = standing


def apply_flags(roster: Roster, digest: list[tuple[int, dict]],
                nomail: list[tuple[int, dict]]) -> int:
    """Set the modes the `--digest any` and `--nomail any` listings give; nomail
    wins (Mailman sends such a member nothing, digest or not). Returns how many
    listed addresses are not in the roster (they are added with that mode)."""
    extra = 0
    for mode, listed in (("digest", digest), ("nomail", nomail)):
        for number, row in listed:
            if row["address"] not in roster.rows:
                extra += 1
                roster.rows[row["address"]] = dict(row)
                roster.lines[row["address"]] = number
            roster.rows[row["address"]]["mode"] = mode
    return extra


def read_config(text: str, source: str, languages: tuple[str, ...]) -> dict:
    """The forum settings a Mailman 3 list's config JSON gives (only those set)."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ListservError(f"{source}: not readable JSON: {error}") from None
    if not isinstance(config, dict):
        raise ListservError(f"{source}: expected a list's settings, a JSON object "
                            f"(GET /3.1/lists/LIST/config)")
    settings: dict = {}
    if config.get("display_name"):
        settings["title"] = str(config["display_name"])
    if config.get("description"):
        settings["description"] = str(config["description"])
    language = str(config.get("preferred_language") or "")[:2]
    if language in languages:
        settings["language"] = language
    member_action = config.get("default_member_action")
    nonmember_action = config.get("default_nonmember_action")
    if member_action == "hold":
        settings["policy"] = "moderated"
    elif member_action in ("accept", "defer"):
        settings["policy"] = "open" if nonmember_action in ("accept", "defer") else "members"
    if nonmember_action in ("hold", "reject", "discard"):
        settings["non_member"] = nonmember_action
    policy = config.get("subscription_policy")
    if policy in ("moderate", "confirm_then_moderate"):
        settings["subscription"] = "approve"
    elif policy in ("confirm", "open"):
        settings["subscription"] = "open"
    if config.get("digests_enabled") is False:
        settings["digest"] = "never"
    elif config.get("digest_frequency") in DIGEST_FREQUENCIES:
        settings["digest"] = DIGEST_FREQUENCIES[config["digest_frequency"]]
    return settings
