"""listserv.toml: the shipped default documents every key, and every mistake in
a site's file is one line naming the file, the section and the key."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from helpers import listserv

from listserv.errors import ConfigError
from listserv.site.resources import shipped_dir
from listserv.site.settings import SECTIONS, Settings, load_settings

SHIPPED = shipped_dir("config") / "listserv.toml"


def write_config(tmp_path: Path, text: str) -> Path:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    path = site / "listserv.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    path = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


def test_the_shipped_config_lists_every_key_of_every_section():
    raw = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))
    assert sorted(raw) == sorted(SECTIONS)
    for name, section in SECTIONS.items():
        keys = [f.name for f in dataclasses.fields(section)]
        assert sorted(raw[name]) == sorted(keys), f"[{name}] in the shipped config"


def test_the_shipped_config_gives_each_key_its_default():
    shipped = load_settings(SHIPPED)
    assert dataclasses.replace(shipped, source="x") == Settings(source="x")


def test_every_key_in_the_shipped_config_has_a_comment_above_it():
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+ = ", line):
            above = lines[number - 1].strip()
            assert above.startswith("#"), f"'{line}' has no comment above it"


def test_an_unknown_section_names_the_file_and_the_section(tmp_path):
    message = config_error(tmp_path, '[site]\ndomain = "lists.example.org"\n[mail]\nx = 1\n')
    assert "unknown section [mail]" in message
    assert "[delivery]" in message  # the known ones are listed


def test_an_unknown_key_names_the_section_and_the_key(tmp_path):
    message = config_error(tmp_path, '[smtp]\nlisten = "127.0.0.1:25"\nmax_size = 10\n')
    assert "[smtp] unknown key 'max_size'" in message
    assert "max_message_size" in message


def test_a_wrong_type_names_the_key_and_the_type_wanted(tmp_path):
    message = config_error(tmp_path, '[smtp]\nmax_message_size = "ten megabytes"\n')
    assert "[smtp] max_message_size must be a whole number" in message


def test_a_list_where_a_string_belongs_is_a_wrong_type(tmp_path):
    message = config_error(tmp_path, '[site]\ndomain = ["lists.example.org"]\n')
    assert "[site] domain must be a string" in message


def test_a_bad_domain_is_refused_with_an_example(tmp_path):
    message = config_error(tmp_path, '[site]\ndomain = "not a domain"\n')
    assert "[site] domain 'not a domain' is not a mail domain" in message
    assert "lists.example.org" in message


def test_a_smarthost_without_a_port_says_to_add_one(tmp_path):
    message = config_error(tmp_path, '[delivery]\nsmarthost = "mail.example.org"\n')
    assert "[delivery] smarthost 'mail.example.org' needs a host and a port" in message
    assert "mail.example.org:25" in message


def test_a_bad_duration_names_the_key_and_shows_good_ones(tmp_path):
    message = config_error(tmp_path, '[delivery]\ngive_up_after = "five days"\n')
    assert "[delivery] give_up_after 'five days' is not a duration" in message


def test_a_bad_duration_inside_the_retry_schedule_is_found(tmp_path):
    message = config_error(tmp_path, '[delivery]\nretry_schedule = ["1m", "soon"]\n')
    assert "[delivery] retry_schedule 'soon' is not a duration" in message


def test_the_wait_before_a_failed_message_is_tried_again_is_a_duration_of_a_second_or_more(
        tmp_path):
    message = config_error(tmp_path, '[site]\nretry_handling = "soon"\n')
    assert "[site] retry_handling 'soon' is not a duration" in message
    message = config_error(tmp_path, '[site]\nretry_handling = "0s"\n')
    assert "[site] retry_handling" in message and "at least '1s'" in message


def test_a_bad_language_code_is_refused(tmp_path):
    message = config_error(tmp_path, '[site]\nlanguages = ["en", "French"]\n')
    assert "[site] languages must list two-letter language codes" in message


def test_a_default_language_outside_the_site_languages_is_refused(tmp_path):
    message = config_error(tmp_path, '[site]\nlanguages = ["en", "fr"]\n'
                                     'default_language = "pt"\n')
    assert "[site] default_language 'pt' is not one of [site] languages" in message


def test_a_toml_syntax_error_names_the_file_and_the_line(tmp_path):
    message = config_error(tmp_path, '[site]\ndomain = "lists.example.org\n')
    assert "line 2" in message


def test_a_missing_file_says_how_to_make_a_site(tmp_path):
    with pytest.raises(ConfigError, match="listserv init"):
        load_settings(tmp_path / "listserv.toml")


@pytest.mark.parametrize("text, words", [
    ('[site]\ndomain = "not a domain"\n', "[site] domain 'not a domain' is not a mail domain"),
    ('[delivery]\nsmarthost = "mail.example.org"\n', "[delivery] smarthost"),
    ('[smtp]\nmax_size = 10\n', "[smtp] unknown key 'max_size'"),
    ('[site\n', "listserv.toml: "),
])
def test_status_on_a_broken_config_exits_1_with_that_line_and_no_traceback(tmp_path, text,
                                                                            words):
    path = write_config(tmp_path, text)
    result = listserv("status", site=path.parent, check=False)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: {path}: ")
    assert words in line
    assert "Traceback" not in result.stderr
