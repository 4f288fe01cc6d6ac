"""Reading initiative reports and assembling What's New: pure functions."""

from __future__ import annotations

from digests.reports import clean_title, guess_language, mentioned_ref, read_report
from digests.whatsnew import assemble, trim

LANGUAGES = ("en", "fr", "es", "pt")


def test_a_report_gives_its_fields_whatever_the_language_and_typography():
    body = ("Nous avons ouvert une banque de semences avec vingt familles du village.\n"
            "**Lien** : https://example.org/semences.\n"
            "RÉGION: Mali\n"
            "Forum: sahel-network\n"
            "Quand : tous les samedis\n")
    report = read_report("Banque de semences", body, LANGUAGES)
    assert report["title"] == "Banque de semences"
    assert report["link"] == "https://example.org/semences"
    assert report["region"] == "Mali"
    assert report["forum"] == "sahel-network"
    assert report["when"] == "tous les samedis"
    assert report["language"] == "fr"
    assert report["text"] == "Nous avons ouvert une banque de semences avec vingt familles " \
                             "du village."


def test_signatures_quoted_replies_and_reply_headers_are_not_read():
    body = ("We started a radio programme for farmers in the valley.\n\n"
            "On Monday, Ana wrote:\n> Link: https://evil.example/\n> old text\n\n"
            "-- \nBen\nhttps://ben.example/signature\n")
    report = read_report("Re: Fwd: Valley radio", body, LANGUAGES)
    assert report["title"] == "Valley radio"
    assert report["text"] == "We started a radio programme for farmers in the valley."
    assert report["link"] == ""


def test_without_a_link_line_the_first_web_address_in_the_text_is_the_link():
    report = read_report("Water", "See https://example.org/water, it explains all.", LANGUAGES)
    assert report["link"] == "https://example.org/water"


def test_a_language_line_wins_over_the_guess_and_names_may_be_written_out():
    report = read_report("Título", "Idioma: español\nThe text is in English for the test.",
                         LANGUAGES)
    assert report["language"] == "es"
    assert guess_language("O projeto das mulheres para a água e as sementes", LANGUAGES) == "pt"
    assert guess_language("Ok", LANGUAGES) == ""


def test_the_initiative_tag_is_taken_from_subjects_and_kept_out_of_titles():
    assert mentioned_ref("Re: [INIT-42] Received: Seeds") == 42
    assert mentioned_ref("Seeds") is None
    assert clean_title("Re: [INIT-42] Seeds\r\nBcc: x@example.org") == \
        "Seeds Bcc: x@example.org"


def test_items_are_trimmed_at_a_word_boundary():
    text = "Clean water for every village in the valley, with wells dug by all."
    assert trim(text, 30) == "Clean water for every village…"
    assert trim(text, 300) == text
    assert len(trim("x" * 500, 40)) == 40


def _row(number, path, region="", forum="", language="en", text="Some text"):
    return {"id": number, "title": f"T{number}", "text": text, "link": "", "region": region,
            "path": path, "forum": forum, "language": language, "happens": ""}


def test_items_are_grouped_by_path_then_region_or_forum_in_a_fixed_order():
    rows = [_row(1, "thematic", forum="water"), _row(2, "geocultural", region="Sahel"),
            _row(3, "", region="Andes"), _row(4, "geocultural", region="Andes"),
            _row(5, "socioprofessional", forum="farmers"), _row(6, "geocultural"),
            _row(7, "thematic", forum="water", language="pt")]
    sections = assemble(rows, 100, {"water": "Water commons", "farmers": "Farmers"},
                        {"geocultural": "Places", "thematic": "Themes",
                         "socioprofessional": "Networks", "other": "Elsewhere"})
    shape = [(s["heading"], s["subheading"], [i["ref"] for i in s["items"]]) for s in sections]
    assert shape == [("Places", "Andes", ["INIT-4"]), ("Places", "Sahel", ["INIT-2"]),
                     ("Places", "", ["INIT-6"]), ("Networks", "Farmers", ["INIT-5"]),
                     ("Themes", "Water commons", ["INIT-1", "INIT-7"]),
                     ("Elsewhere", "Andes", ["INIT-3"])]
    assert sections[4]["items"][1]["language"] == "pt"
