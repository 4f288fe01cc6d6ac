"""Reading files of members to import: CSV with a header, or address lines.

`read_member_file` takes an open text file and yields (line number, row)
pairs, a row being a dict of the import fields (`address`, and any of
`name`, `language`, `mode`, `profile`, `region`). Two shapes are read:

- CSV whose first line is a header naming an `address` column (the
  spreadsheet export the secretariat keeps);
- one address a line, as mail programs and GNU Mailman write them:
  `Ana Souza <ana@example.org>`, `"Diallo, Amina" <amina@example.org>`,
  `ben@example.org (Ben)` or a bare address; blank lines and lines starting
  with '#' are skipped, and so is Mailman's "LIST has no members" line.
  Names Mailman wrote RFC 2047 encoded (`=?utf-8?q?Jos=C3=A9?=`) are decoded.

The address itself is checked by whoever adds the member. Reads only.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from email.header import decode_header, make_header
from email.utils import getaddresses

from listserv.site.members import read_csv

_NO_MEMBERS = re.compile(r"^\S+ has no members$")


def is_address_lines(first_line: str) -> bool:
    """True when a file's first meaningful line is an address, not a CSV header."""
    cells = [cell.strip().strip('"').lower() for cell in next(csv.reader([first_line]), [])]
    return "address" not in cells and "@" in first_line


def read_member_file(handle) -> Iterator[tuple[int, dict]]:
    """(line number, row) from a CSV with a header or from address lines."""
    lines = iter(handle)
    head: list[str] = []
    for line in lines:
        head.append(line)
        if line.strip() and not line.lstrip().startswith("#"):
            break
    first = head[-1] if head else ""
    if not is_address_lines(first):
        yield from read_csv(_chain(head, lines))
        return
    number = 0
    for number, line in enumerate(head, 1):
        row = parse_address_line(line)
        if row is not None:
            yield number, row
    for number, line in enumerate(lines, number + 1):
        row = parse_address_line(line)
        if row is not None:
            yield number, row


def _chain(first, rest):
    for line in first:
        yield line
    yield from rest


def parse_address_line(line: str) -> dict | None:
    """One address line as an import row; None for a blank or comment line.
    A line that is no address gives a row whose address is the line itself,
    so the importer reports it with its number."""
    text = line.strip()
    if not text or text.startswith("#") or _NO_MEMBERS.match(text):
        return None
    found = [(name, address) for name, address in getaddresses([text]) if address]
    if len(found) != 1 or "@" not in found[0][1]:
        return {"address": text}
    name, address = found[0]
    return {"address": address, "name": _decoded(name)}


def _decoded(name: str) -> str:
    """A display name as Mailman writes it: RFC 2047 encoded when not ASCII."""
    if "=?" not in name:
        return name
    try:
        return str(make_header(decode_header(name)))
    except (ValueError, LookupError, UnicodeDecodeError):  # a broken encoded word: keep it
        return name
