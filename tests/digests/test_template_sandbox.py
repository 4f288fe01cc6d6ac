"""Point 6: escapes, file access, enormous loops: refused with a clear error, never used."""

from __future__ import annotations

import pytest
from digestkit import set_key
from helpers import listserv, make_site

from digests.template_check import check_source

HELP = "Subject: Help\n\n"
ESCAPES = {
    "mro": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "'__class__' is private"),
    "globals": ("{{ cycler.__init__.__globals__.os }}", "'__init__' is private"),
    "attr filter": ("{{ site|attr('__class__') }}", "text with '__' is not allowed"),
    "subscript": ("{{ site['_secret'] }}", "'_secret' is private"),
    "include up": ("{% include '../../listserv.toml' %}", "include of '../../listserv.toml' "
                                                          "refused"),
    "include absolute": ("{% include '/etc/passwd' %}", "include of '/etc/passwd' refused"),
    "import up": ("{% import '../data/listserv.db' as db %}", "import of '../data/listserv.db'"
                                                              " refused"),
    "extends": ("{% extends '/etc/hosts' %}", "extends of '/etc/hosts' refused"),
    "computed name": ("{% include site.name %}", "include must name a template in quotes"),
    "nested ranges": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                      "{% endfor %}", "could run more than 100000 times"),
    "range from data": ("{% for i in range(languages|length * 1000000) %}{% endfor %}",
                        "could run more than 100000 times"),
    "huge number": ("{{ 'x'|center(1000000000) }}", "larger than templates may use"),
}


@pytest.fixture
def plain_site(site):
    return site


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_an_escape_from_the_sandbox_is_refused_with_its_line(plain_site, case):
    source, expected = ESCAPES[case]
    checked = check_source(plain_site, "en", "help.txt", HELP + "Line three\n" + source + "\n")
    assert not checked.ok
    assert any(e.startswith("en/help.txt:4: ") and expected in e for e in checked.errors), \
        checked.errors


@pytest.mark.parametrize("source, budget, expected", [
    ("{{ 'x' * 10 ** 9 }}", 60, "may not compute numbers above"),
    ("{% for i in range(99999) %}{{ 'x' * 100 }}{% endfor %}", 60, "produced more than"),
    ("{% for a in languages %}{% for b in range(99999) %}{% for c in languages %}"
     "{% for d in languages %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}", 0.5,
     "rendering took longer than 0.5s"),
    ("{{ lipsum(5000000) }}", 60, "'lipsum' is undefined"),
    ("{{ '%099999999d' % 1 }}", 60, "format width this large"),
])
def test_what_would_exhaust_the_server_is_stopped_when_the_template_is_checked(
        plain_site, source, budget, expected):
    checked = check_source(plain_site, "en", "help.txt", HELP + source, budget=budget)
    assert not checked.ok
    assert expected in checked.errors[0], checked.errors


def test_html_templates_may_use_only_what_bleach_keeps_in_any_branch(plain_site):
    base = "<h1>{{ labels.title }}</h1>"
    bad = {"<script>alert(1)</script>": "the tag <script> is not allowed",
           '<p onclick="steal()">x</p>': "the attribute 'onclick' of <p> is not allowed",
           '<a href="javascript:steal()">x</a>': "links may only be http:, https: or mailto:",
           "{% if false %}<iframe src=x></iframe>{% endif %}": "the tag <iframe>",
           "<{{ labels.title }}>": "the tag <x> is not allowed"}
    for markup, expected in bad.items():
        checked = check_source(plain_site, "en", "whatsnew-issue.html", base + markup)
        assert any(expected in e for e in checked.errors), (markup, checked.errors)
    good = check_source(plain_site, "en", "whatsnew-issue.html",
                        base + '<p><a href="https://example.org/">{{ issue.ref }}</a></p>')
    assert good.ok and "WN-17" in good.preview


def test_a_misspelt_name_a_missing_subject_and_an_unknown_template_are_refused(plain_site):
    typo = check_source(plain_site, "fr", "welcome.txt", "Subject: Hi\n\n{{ forum.titel }}\n")
    assert typo.errors[0].startswith("fr/welcome.txt:3: UndefinedError")
    no_subject = check_source(plain_site, "en", "welcome.txt", "Welcome!\n")
    assert "must begin with a 'Subject:' line" in no_subject.errors[0]
    unknown = check_source(plain_site, "en", "../../listserv.toml", "x")
    assert "no template of that name" in unknown.errors[0]
    other_language = check_source(plain_site, "de", "welcome.txt", "Subject: x\n\ny")
    assert "'de' is not one of the site's languages" in other_language.errors[0]


def test_a_malicious_hand_edit_is_reported_by_check_and_status_and_never_used(tmp_path, sink):
    folder = make_site(tmp_path, sink)
    set_key(folder, "templates", "render_limit", '"1s"')
    (folder / "templates" / "en" / "help.txt").write_text(
        "Subject: Help\n\n{{ ''.__class__.__mro__ }}\n{% include '/etc/passwd' %}\n")
    result = listserv("templates", "check", site=folder, check=False)
    assert result.returncode == 1
    assert "BROKEN  en/help.txt:3: '__class__' is private" in result.stdout
    assert "BROKEN  en/help.txt:4: include of '/etc/passwd' refused" in result.stdout
    assert "ok      fr/help.txt (shipped)" in result.stdout
    assert "1 template(s) have errors" in result.stderr
    assert not (folder / "data" / "templates" / "en" / "help.txt").exists()
    status = listserv("status", site=folder, check=False).stdout
    assert "Templates: BROKEN" in status and "en/help.txt" in status
