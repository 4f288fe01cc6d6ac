"""Postal delivery at a relay: print-ready batches for the centre's operator.

One batch per publication and language, in `data/postal/BATCH/`:
`master.pdf`, the publication to print (A4, rendered from the
`postal-master` template in the batch's language, set in Open Sans so that
accented Latin, Greek and Cyrillic text prints; characters the font lacks
are left out with a warning, never a crash), `labels.pdf` (A4 sheets of
3 x 8 address labels of 70 x 37 mm) and `manifest.csv`, both in order of
country. Who is in a batch is fixed when the publication is dispatched
(`postal_labels`), so later changes to recipients do not change it. The
files are written to a temporary folder and renamed into place, then the
batch is marked 'ready' in the store: a crash at any point leaves a batch
'building', and it is built again from the start. Postal addresses never
leave the relay. Reads relay tables; writes the batch folder and
`postal_batches`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
from datetime import datetime
from pathlib import Path

from listserv.errors import ListservError, NotFound
from listserv.mail.templates import render_mail
from listserv.site import store
from relays import node
from relays.render import load_view

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
LABEL_W, LABEL_H, COLUMNS, ROWS = 70.0, 37.0, 3, 8
MAX_LINES = 7  # name, up to five address lines, country: what a 37 mm label holds
MIN_TYPE = 7.0  # points: a line too wide is set smaller down to this, then reported
FILES = ("master.pdf", "labels.pdf", "manifest.csv")


def batch_id(key: str, language: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") + f"-{language}"


def folder_of(site, batch: str) -> Path:
    return site.data / "postal" / batch


def _pdf(cls=None):
    """A new A4 document with Open Sans (fpdf2 and the font are loaded on first use)."""
    from fpdf import FPDF
    from ttf_opensans import opensans

    pdf = (cls(FPDF) if cls else FPDF)(format="A4")
    pdf.add_font("body", "", str(opensans().path))
    pdf.add_font("body", "B", str(opensans(font_weight=700).path))
    return pdf


def address_lines(text: str) -> list[str]:
    """A postal address as printed: lines split on new lines or ';'."""
    return [line.strip() for line in re.split(r"[;\n]", text or "") if line.strip()]


def _master_class(base):
    class Master(base):
        """The master copy: A4 pages with the publication's key in the footer."""

        footer_text = ""

        def footer(self) -> None:
            self.set_y(-12)
            self.set_font("body", "", 8)
            self.cell(0, 6, f"{self.footer_text}  {self.page_no()}/{{nb}}", align="C")

    return Master


def master_pdf(title: str, body: str, footer: str) -> bytes:
    """Lay out a rendered `postal-master` text: '# ' title, '## ' heading,
    '### ' item title, other lines as paragraphs."""
    pdf = _pdf(_master_class)
    pdf.footer_text = footer
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(True, margin=18)
    pdf.set_title(title)
    pdf.add_page()
    styles = {"# ": ("B", 17, 9, 4), "## ": ("B", 13, 7, 3), "### ": ("B", 11, 6, 1)}
    for line in body.split("\n"):
        for prefix, (style, size, height, gap) in styles.items():
            if line.startswith(prefix):
                pdf.ln(gap)
                pdf.set_font("body", style, size)
                pdf.multi_cell(0, height, line[len(prefix):].strip(), align="L", new_x="LMARGIN",
                               new_y="NEXT")
                break
        else:
            if not line.strip():
                pdf.ln(2.5)
                continue
            pdf.set_font("body", "", 10.5)
            pdf.multi_cell(0, 5.2, line.rstrip(), align="L", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def country_line(code: str, language: str, home: str) -> str:
    """The last line of a label (UPU S42): the country's name in capitals in the
    sender's language, or nothing for domestic mail."""
    code = (code or "").upper()
    if not code or code == (home or "").upper():
        return ""
    from babel import Locale, UnknownLocaleError

    try:
        name = Locale.parse(language).territories.get(code)
    except (UnknownLocaleError, ValueError):
        name = None
    if not name:
        name = Locale.parse("en").territories.get(code, code)
    return name.upper()


def label_lines(label: dict, language: str, home: str) -> list[str]:
    """A label's lines, as S42 orders them: name, address lines, country."""
    lines = [label.get("name", "")] + address_lines(label.get("postal_address", ""))
    return [line for line in lines + [country_line(label.get("country", ""), language, home)]
            if line]


def labels_pdf(labels: list[dict], *, language: str = "en", home: str = "",
               return_address: str = "") -> tuple[bytes, list[dict]]:
    """A4 sheets of 3 x 8 labels, in the order given (by country), each headed by
    the centre's return address; returns the PDF and the labels that do not fit
    (more lines than a label holds, or a line too wide even in a smaller type):
    those are printed whole as far as they go and reported, never cut silently."""
    pdf = _pdf()
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    per_page = COLUMNS * ROWS
    top = (297 - ROWS * LABEL_H) / 2
    width = LABEL_W - 12
    sender = ", ".join(address_lines(return_address))
    problems = []
    for index, label in enumerate(labels or [{}]):
        if index % per_page == 0:
            pdf.add_page()
        slot = index % per_page
        x = (slot % COLUMNS) * LABEL_W + 6
        y = top + (slot // COLUMNS) * LABEL_H + 3
        if sender and label:
            pdf.set_font("body", "", 6)
            pdf.set_xy(x, y)
            pdf.cell(width, 3, _fit(pdf, sender, width))
        y += 3.5
        lines = label_lines(label, language, home) if label else []
        trouble = []
        if len(lines) > MAX_LINES:
            trouble.append(f"{len(lines)} lines, a label holds {MAX_LINES}")
        for number, text in enumerate(lines[:MAX_LINES]):
            size = 9
            pdf.set_font("body", "B" if number == 0 else "", size)
            while pdf.get_string_width(text) > width and size > MIN_TYPE:
                size -= 0.5
                pdf.set_font("body", "B" if number == 0 else "", size)
            if pdf.get_string_width(text) > width:
                trouble.append(f"line {number + 1} is too wide: '{text}'")
            pdf.set_xy(x, y + number * 4.2)
            pdf.cell(width, 4.2, text)
        if trouble:
            problems.append({"recipient_id": label.get("recipient_id"),
                             "name": label.get("name", ""), "problem": "; ".join(trouble)})
    return bytes(pdf.output()), problems


def _fit(pdf, text: str, width: float) -> str:
    while text and pdf.get_string_width(text) > width:
        text = text[:-2] + "…" if len(text) > 2 else ""
    return text


def manifest_csv(labels: list[dict], batch: str, key: str, language: str,
                 problems: list[dict] = ()) -> bytes:
    """One row per label, then a subtotal per country and the total: what the
    post office counter asks for. `kind` tells the rows apart."""
    trouble = {p["recipient_id"]: p["problem"] for p in problems}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["kind", "country", "name", "postal_address", "language", "batch",
                     "publication", "copies", "problem"])
    counts: dict[str, int] = {}
    for label in labels:
        counts[label["country"]] = counts.get(label["country"], 0) + 1
        writer.writerow(["label", label["country"], label["name"],
                         " / ".join(address_lines(label["postal_address"])), language, batch,
                         key, 1, trouble.get(label.get("recipient_id"), "")])
    for country, number in counts.items():
        writer.writerow(["subtotal", country, "", "", language, batch, key, number, ""])
    writer.writerow(["total", "", "", "", language, batch, key, len(labels), ""])
    return out.getvalue().encode("utf-8")


# -- building batches ------------------------------------------------------------
def files_for(db, site, batch: dict) -> dict[str, bytes]:
    """The three files of a batch, from the store (no writes)."""
    publication = db["relay_publications"].get(batch["publication_id"])
    view = load_view(db, publication, batch["language"])
    labels = list(db.query("SELECT recipient_id, name, postal_address, country FROM "
                           "postal_labels WHERE batch_id = ? ORDER BY country, name, "
                           "recipient_id", [batch["id"]]))
    title, body = render_mail(site.active_templates, "postal-master.txt", batch["language"],
                              site={"name": site.settings.site.name,
                                    "domain": site.settings.domain},
                              commands=f"listserv@{site.settings.domain}", view=view,
                              postal=", ".join(address_lines(
                                  site.settings.relay.postal_return_address)))
    footer = f"{site.settings.site.name} - {publication['key']} - {batch['language']}"
    relay = site.settings.relay
    sheet, problems = labels_pdf(labels, language=site.settings.site.default_language,
                                 home=relay.postal_country,
                                 return_address=relay.postal_return_address)
    return {"master.pdf": master_pdf(title, body, footer), "labels.pdf": sheet,
            "manifest.csv": manifest_csv(labels, batch["id"], publication["key"],
                                         batch["language"], problems),
            "problems": problems}


def write_folder(target: Path, files: dict[str, bytes]) -> None:
    """Write the files beside `target`, sync them, then rename into place."""
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for name, data in files.items():
        with open(temporary / name, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    if target.exists():
        shutil.rmtree(target)
    os.replace(temporary, target)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def build(site, batch_id: str) -> dict:
    """Build one batch's files (on any thread: it opens its own connection);
    returns the per-country counts for `mark_built`."""
    db = store.connect(site.db_path)
    try:
        batch = db["postal_batches"].get(batch_id)
        files = files_for(db, site, batch)
        problems = files.pop("problems")
        countries = dict(db.execute(
            "SELECT country, count(*) FROM postal_labels WHERE batch_id = ? "
            "GROUP BY country ORDER BY country", [batch_id]).fetchall())
    finally:
        db.conn.close()
    write_folder(folder_of(site, batch_id), files)
    return {"countries": countries, "problems": problems}


def mark_built(db, batch_id: str, built: dict, now: datetime) -> None:
    """`built` is what `build` returned: the per-country counts and the labels
    that do not fit."""
    countries, problems = built.get("countries", built), built.get("problems", [])
    db.execute("UPDATE postal_batches SET status = 'ready', built_at = ?, countries = ?, "
               "problems = ?, error = '' WHERE id = ? AND status = 'building'",
               [now.isoformat(), json.dumps(countries), json.dumps(problems, ensure_ascii=False),
                batch_id])
    log.info("postal batch %s is ready to print", batch_id)
    for problem in problems:
        log.warning("postal batch %s: the label of %s does not fit: %s", batch_id,
                    problem["name"], problem["problem"])


def mark_failed(db, batch_id: str, error: str) -> None:
    db.execute("UPDATE postal_batches SET attempts = attempts + 1, error = ?, status = "
               "CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE status END WHERE id = ?",
               [error[:500], MAX_ATTEMPTS, batch_id])


def next_building(db) -> str | None:
    row = db.execute("SELECT id FROM postal_batches WHERE status = 'building' "
                     "ORDER BY created_at, id LIMIT 1").fetchone()
    return row[0] if row else None


def build_pending(site, now: datetime) -> int:
    """Build every batch still 'building', one after another (command line, tests)."""
    built = 0
    while (batch := next_building(site.db)) is not None:
        try:
            countries = build(site, batch)
        except Exception as error:
            log.exception("postal batch %s could not be built", batch)
            site.write_now(mark_failed, batch, f"{type(error).__name__}: {error}")
            continue
        site.write_now(mark_built, batch, countries, now)
        built += 1
    return built


# -- the operator's commands -------------------------------------------------------
def list_batches(db) -> list[dict]:
    rows = list(db.query(
        "SELECT b.id, p.key AS publication, b.language, b.recipients, b.countries, b.status, "
        "b.created_at, b.built_at, b.sent_at, b.error, b.problems, b.folder, "
        "b.publication_id FROM postal_batches b "
        "JOIN relay_publications p ON p.id = b.publication_id ORDER BY b.created_at DESC, b.id"))
    for row in rows:
        row["countries"] = json.loads(row["countries"] or "{}")
        row["problems"] = json.loads(row["problems"] or "[]")
    return rows


def show_batch(db, site, batch: str) -> dict:
    rows = [row for row in list_batches(db) if row["id"] == batch]
    if not rows:
        raise NotFound(f"postal batch '{batch}' does not exist (see 'listserv postal list')")
    row = rows[0]
    folder = folder_of(site, batch)
    row["files"] = [str(folder / name) for name in FILES if (folder / name).exists()]
    return row


def mark_sent(db, batch: str, now: datetime, site=None) -> dict:
    """Record that a batch was printed and posted; with `site`, the hub is told
    (stage 'posted', once per batch), so its 'dispatched' for post means posted."""
    row = db.execute("SELECT status, sent_at FROM postal_batches WHERE id = ?",
                     [batch]).fetchone()
    if row is None:
        raise NotFound(f"postal batch '{batch}' does not exist (see 'listserv postal list')")
    status, sent_at = row
    if status == "sent":
        raise ListservError(f"postal batch '{batch}' was already marked sent on "
                            f"{sent_at[:16].replace('T', ' ')}")
    if status != "ready":
        raise ListservError(f"postal batch '{batch}' is {status}, not ready to post; "
                            f"wait for 'listserv serve' to build it")
    db.execute("UPDATE postal_batches SET status = 'sent', sent_at = ? WHERE id = ?",
               [now.isoformat(), batch])
    if site is not None:
        row = next(r for r in list_batches(db) if r["id"] == batch)
        node.send_ack(db, site, row["publication"], "posted",
                      {"batch": batch, "language": row["language"],
                       "recipients": row["recipients"], "countries": row["countries"]},
                      now, part=batch)
    return {"id": batch, "status": "sent", "sent_at": now.isoformat()}
