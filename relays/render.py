"""A publication as a reader at a relay gets it: localised, links as references.

`localise` builds the view every rendering shares (lowband text, the postal
master copy, `get` answers) from the hub's payload and the segments of one
language: each text is its translation when there is one, else the
original, marked with the original's language when a translation was due
and did not come. `assign_refs` gives every item, and every web link in a
text, a short reference (`L12`) kept in `relay_links`, the same for every
language and every rendering, so a reader can ask for it with `get L12`.
An item the hub sent with its whole text (`full`) shows trimmed as in the
bulletin (`text`) and whole where a reader asks for it or on paper
(`full`). `wrap` wraps text at 72 columns, `flowed` as RFC 3676 format=flowed. Pure functions apart from `assign_refs`
and `load_view` (reads segments, writes `relay_links`).
"""

from __future__ import annotations

import json
import re
import textwrap

from digests.whatsnew import trim
from relays.translation import DONE, item_text, recall, sections_of

WIDTH = 72
URL = re.compile(r"https?://[^\s<>\"'\])]+", re.IGNORECASE)
ITEM_KEYS = ("ref", "region", "path", "forum", "author", "date", "when")


def find_urls(text: str) -> list[str]:
    return [match.rstrip(".,;:!?") for match in URL.findall(text or "")]


def item_paths(payload: dict):
    """(path, item) of every item, in reading order."""
    for i, section in enumerate(sections_of(payload)):
        for j, item in enumerate(section.get("items") or []):
            if isinstance(item, dict):
                yield f"sections.{i}.items.{j}", item


def assign_refs(db, publication_id: int, payload: dict, extra_texts=()) -> dict:
    """The reference of each item and each link: {(item path, url or ""): "L12"}."""
    wanted = []
    for path, item in item_paths(payload):
        wanted.append((path, ""))
        link = str(item.get("link") or "").strip()
        if link:
            wanted.append((path, link))
        for key in ("title", "text", "full"):
            wanted += [(path, url) for url in find_urls(str(item.get(key) or ""))]
    for path, text in extra_texts:  # translations may carry links of their own
        wanted += [(path, url) for url in find_urls(text)]
    known = load_refs(db, publication_id)
    number = db.execute("SELECT coalesce(max(rowid), 0) FROM relay_links").fetchone()[0]
    rows = []
    for path, url in dict.fromkeys(wanted):
        if (path, url) not in known:
            number += 1
            known[(path, url)] = f"L{number}"
            rows.append((number, f"L{number}", publication_id, path, url))
    db.conn.executemany("INSERT INTO relay_links (rowid, ref, publication_id, path, url) "
                        "VALUES (?, ?, ?, ?, ?)", rows)
    return known


def load_refs(db, publication_id: int) -> dict:
    return {(path, url): ref for ref, path, url in db.execute(
        "SELECT ref, path, url FROM relay_links WHERE publication_id = ?", [publication_id])}


def segments_by_path(db, publication_id: int, language: str) -> dict[str, dict]:
    return {row["path"]: row for row in db.query(
        "SELECT path, status, text, source_language FROM translation_segments "
        "WHERE publication_id = ? AND language = ?", [publication_id, language])}


def load_view(db, publication: dict, language: str) -> dict:
    """The view of a stored publication in `language` (its original when the
    relay has no segments in that language)."""
    payload = json.loads(publication["payload"])
    segments = segments_by_path(db, publication["id"], language)
    if not segments:
        language = publication["language"]
    refs = load_refs(db, publication["id"])
    return with_places(db, localise(payload, publication, language, segments, refs))


def with_places(db, view: dict) -> dict:
    """Region names in the view's language where the translation memory has them
    (they are names, not segments: a translator's earlier answer is reused)."""
    if view["language"] == view["original_language"]:
        return view
    for section in view["sections"]:
        for item in section["entries"]:
            if item.get("region"):
                item["region"] = recall(db, view["original_language"], view["language"],
                                        item["region"]) or item["region"]
    return view


def localise(payload: dict, publication: dict, language: str, segments: dict[str, dict],
             refs: dict) -> dict:
    """The publication in `language`; texts whose translation is missing keep
    the original, with `original` naming its language."""
    missing: set[str] = set()

    def field(path: str, value) -> dict:
        text = str(value).strip() if isinstance(value, str) else ""
        segment = segments.get(path)
        if not text or segment is None:
            return {"text": text, "original": ""}
        if segment["status"] in DONE and segment["text"]:
            return {"text": segment["text"].strip(), "original": ""}
        missing.add(segment["source_language"])
        return {"text": text, "original": segment["source_language"]}

    sections = []
    for i, section in enumerate(sections_of(payload)):
        items = []
        for j, item in enumerate(section.get("items") or []):
            if not isinstance(item, dict):
                continue
            path = f"sections.{i}.items.{j}"
            view = {key: str(item.get(key) or "") for key in ITEM_KEYS}
            whole = field(f"{path}.text", item_text(item))
            view.update({"title": field(f"{path}.title", item.get("title")),
                         "text": dict(whole), "full": whole, "trimmed": False,
                         "link": str(item.get("link") or "").strip(),
                         "more": refs.get((path, ""), ""), "path_in_payload": path})
            view["link_ref"] = refs.get((path, view["link"]), "") if view["link"] else ""
            if item.get("full") and whole["text"]:  # the bulletin shows it trimmed
                length = int(payload.get("item_length") or len(str(item.get("text") or "")))
                view["text"]["text"] = trim(whole["text"], max(40, length))
                view["trimmed"] = view["text"]["text"] != " ".join(whole["text"].split())
            for key in ("title", "text", "full"):
                view[key]["text"] = replace_urls(view[key]["text"], path, refs)
            items.append(view)
        sections.append({"heading": field(f"sections.{i}.heading", section.get("heading")),
                         "subheading": field(f"sections.{i}.subheading",
                                             section.get("subheading")),
                         "entries": items})
    title = field("title", payload.get("title") or publication.get("title"))
    first = next((e["more"] for s in sections for e in s["entries"] if e["more"]), "L1")
    return {"key": publication["key"], "kind": publication["kind"],
            "number": publication.get("number") or 0, "language": language,
            "original_language": publication["language"], "title": title,
            "forum": str(payload.get("forum") or ""), "sections": sections,
            "untranslated": sorted(missing), "example_ref": first,
            "period": payload.get("period") if isinstance(payload.get("period"), dict) else {}}


def replace_urls(text: str, path: str, refs: dict) -> str:
    """Each web link in a text becomes its reference, '[L12]'."""
    def swap(match: re.Match) -> str:
        url = match.group(0)
        trail = url[len(url.rstrip(".,;:!?")):]
        ref = refs.get((path, url.rstrip(".,;:!?")))
        return f"[{ref}]{trail}" if ref else url
    return URL.sub(swap, text)


def find_item(view: dict, path: str) -> dict | None:
    for section in view["sections"]:
        for item in section["entries"]:
            if item["path_in_payload"] == path:
                return item
    return None


def wrap(text: str, width: int = WIDTH) -> str:
    """Every line at most `width` columns, keeping each line's indent, and a list
    item's hanging indent; a word longer than a line (a URL) is never cut: it
    stays whole on a line of its own."""
    return "\n".join(line for line, _soft in _wrapped(text, width))


def flowed(text: str, width: int = WIDTH) -> str:
    """`text` as format=flowed (RFC 3676, DelSp=No), so a reader's client can
    rewrap it: a line broken here ends with a space (a soft break); a line that
    starts with a space, '>' or 'From ' gets one more space in front (stuffing).
    Lines stay within `width` columns, those marks included; a URL longer than
    a line stays whole on its own line."""
    out = []
    for line, soft in _wrapped(text, width - 2, hard_width=width - 1):
        if line.startswith((" ", ">", "From ")):
            line = " " + line
        out.append(line + " " if soft else line)
    return "\n".join(out)


def _wrapped(text: str, width: int, hard_width: int | None = None):
    """(line, broken here) for each line of `text` wrapped at `width`; a line
    already within `hard_width` (default `width`) is kept as it is."""
    hard_width = width if hard_width is None else hard_width
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.rstrip()
        if len(line) <= hard_width:
            yield line, False
            continue
        indent = line[:len(line) - len(line.lstrip())]
        hanging = indent + ("  " if line.lstrip()[:2] in ("* ", "- ") else "")
        pieces = textwrap.wrap(line.strip(), width, initial_indent=indent,
                               subsequent_indent=hanging, break_long_words=False,
                               break_on_hyphens=False) or [""]
        for number, piece in enumerate(pieces):
            yield piece, number < len(pieces) - 1
