"""`member import` reads one address a line as mail programs and Mailman write
them, as well as CSV with a header; each line that is no address is named."""

from __future__ import annotations

import json
from email.utils import formataddr

from helpers import listserv, write_site


def forum_site(tmp_path):
    folder = write_site(tmp_path / "site")
    listserv("forum", "create", "peace", "--title", "Peace", "--path", "thematic", site=folder)
    return folder


def members_of(folder) -> list[tuple[str, str]]:
    rows = json.loads(listserv("member", "list", "peace", "--json", site=folder).stdout)
    return [(row["address"], row["name"]) for row in rows]


def test_member_import_reads_name_and_address_lines(tmp_path):
    folder = forum_site(tmp_path)
    lines = tmp_path / "members.txt"
    lines.write_text(
        "# exported from the old list\n"
        "\n"
        "Ana Souza <ana@example.org>\n"
        '"Diallo, Amina" <Amina.Diallo@Example.ORG>\r\n'
        "ben@example.net (Ben Okoro)\n"
        f"{formataddr(('José Núñez', 'jose@example.es'))}\n"  # RFC 2047, as Mailman writes it
        "carla@example.pt\n", encoding="utf-8")
    result = listserv("member", "import", "peace", str(lines), site=folder)
    assert result.stdout.strip() == "peace: added 5, already members 0, problems 0"
    assert members_of(folder) == [
        ("amina.diallo@example.org", "Diallo, Amina"), ("ana@example.org", "Ana Souza"),
        ("ben@example.net", "Ben Okoro"), ("carla@example.pt", ""),
        ("jose@example.es", "José Núñez")]


def test_a_line_that_is_no_address_is_reported_by_number_and_the_rest_go_in(tmp_path):
    folder = forum_site(tmp_path)
    lines = tmp_path / "members.txt"
    lines.write_text("Ana <ana@example.org>\nAna Souza ana at example.org\n"
                     "<>\nBen <ben@example.net>\n", encoding="utf-8")
    result = listserv("member", "import", "peace", str(lines), site=folder, check=False)
    assert result.returncode == 1
    problems = [line for line in result.stderr.splitlines() if line.startswith("line ")]
    assert [line.split(":")[0] for line in problems] == ["line 2", "line 3"]
    assert "Traceback" not in result.stderr
    assert [address for address, _ in members_of(folder)] == ["ana@example.org",
                                                              "ben@example.net"]


def test_a_csv_with_a_header_is_still_read_as_csv(tmp_path):
    folder = forum_site(tmp_path)
    roster = tmp_path / "people.csv"
    roster.write_text("address,name,mode\nana@example.org,\"Souza, Ana\",digest\n")
    listserv("member", "import", "peace", str(roster), site=folder)
    assert members_of(folder) == [("ana@example.org", "Souza, Ana")]
