"""Making a new site folder: `listserv init [DIR] [--domain] [--role] [--demo]`.

Writes `listserv.toml` (the shipped `config/listserv.toml` with the domain
and role filled in), `templates/` with a README on overrides, `charter/`
with the shipped charter text of each site language, `data/` with the
database, the site secret and the DKIM keys (RSA-2048 for the selector it
writes into `[dkim]`, and an Ed25519 one ready to be used), and a
`.gitignore` that keeps `data/` out of version control. `--demo` adds three sample forums, one on each path, with
a facilitator and a few members already confirmed. Will not touch an
existing site: a folder with a `listserv.toml` or a `data/` is refused.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from listserv.delivery.dkim import new_key, signing_keys
from listserv.errors import AlreadyExists, ConfigError, ListservError
from listserv.site import forums, members
from listserv.site.folder import Site
from listserv.site.resources import shipped_dir
from listserv.site.settings import Settings, SiteSection

TEMPLATES_README = """\
Site templates
==============

Every mail the site sends (replies to commands, confirmation requests,
notices to facilitators, digests) comes from a template. The shipped
templates live inside listserv, one folder per language. To change one for
this site only, put a file of the same name here, in the folder of its
language:

    templates/xx/NAME    overrides the shipped templates/xx/NAME

For example templates/fr/confirm-subscribe.txt replaces the French
confirmation request. A template is looked up in this order:

    1. this site:  templates/xx/NAME
    2. shipped:    templates/xx/NAME
    3. shipped:    templates/en/NAME   (when the language has none)

Start from a copy of the shipped file. Mail templates begin with a
"Subject:" line and a blank line. Templates are Jinja2, run in a sandbox:
they can use the values they are given ({{ forum.title }}, {{ site.name }})
but cannot read files or run code. A new language is added by listing it
in listserv.toml ([site] languages) and adding its folder here.

The server checks a file here before it uses it (within [templates]
check_every, or at once with 'listserv templates check'): a broken one is
reported to the secretariat and in 'listserv status', and the last good
version stays in use. Every version used is kept: 'listserv templates
history NAME' and 'listserv templates rollback NAME'. The secretariat may
also send a template to templates@ (your domain) to check and activate it.
"""

GITIGNORE = "# The database, spool and outbox: never edited by hand, never committed.\ndata/\n"

# (slug, title, path, language, policy, description, facilitator, members);
# each member is (address, name, language, mode, profile, region).
DEMO_FORUMS = [
    ("water-commons", "Water as a commons", "thematic", "en", "members",
     "A workshop on managing water as a shared good: rivers, wells, rights.",
     "amina.diallo@example.org", [
         ("amina.diallo@example.org", "Amina Diallo", "en", "each", "email", "West Africa"),
         ("lucia.ramos@example.org", "Lucía Ramos", "es", "each", "email", "Andes"),
         ("joao.silva@example.net", "João Silva", "pt", "digest", "email", "Brazil"),
         ("claire.martin@example.net", "Claire Martin", "fr", "each", "lowband", "Europe"),
     ]),
    ("farmers-network", "Farmers' network", "socioprofessional", "fr", "members",
     "Peasant farmers and their organisations sharing seeds, prices and practice.",
     "moussa.traore@example.org", [
         ("moussa.traore@example.org", "Moussa Traoré", "fr", "each", "email", "Mali"),
         ("ana.pereira@example.net", "Ana Pereira", "pt", "each", "lowband", "Mozambique"),
         ("carlos.mendez@example.org", "Carlos Méndez", "es", "digest", "email", "Mexico"),
         ("priya.nair@example.net", "Priya Nair", "en", "nomail", "email", "India"),
     ]),
    ("sahel-network", "Sahel network", "geocultural", "fr", "moderated",
     "Allies in the Sahel: local initiatives, meetings and news of the region.",
     "fatou.ba@example.org", [
         ("fatou.ba@example.org", "Fatou Ba", "fr", "each", "email", "Senegal"),
         ("ibrahim.issa@example.net", "Ibrahim Issa", "fr", "each", "lowband", "Niger"),
         ("aicha.kone@example.org", "Aïcha Koné", "fr", "digest", "lowband", "Burkina Faso"),
         ("tom.baker@example.net", "Tom Baker", "en", "each", "email", "Ghana"),
     ]),
]


@dataclass
class Created:
    """What `init_site` made, for the command line to report."""

    folder: Path
    settings: Settings
    charters: list[str] = field(default_factory=list)
    forums: list[str] = field(default_factory=list)


def render_config(domain: str | None = None, role: str | None = None,
                  selector: str | None = None) -> str:
    """The shipped configuration text with [site] domain and role and [dkim]
    selector filled in."""
    text = (shipped_dir("config") / "listserv.toml").read_text(encoding="utf-8")
    if domain is not None:
        text = _set_site_key(text, "domain", domain)
    if role is not None:
        text = _set_site_key(text, "role", role)
    if selector is not None:
        text = _set_site_key(text, "selector", selector, section="[dkim]")
    return text


def _set_site_key(text: str, key: str, value: str, section: str = "[site]") -> str:
    """Replace `key = "..."` in the [site] section, keeping every comment."""
    head, sep, rest = text.partition(section)
    pattern = re.compile(rf'^{key}\s*=\s*"[^"\n]*"', re.MULTILINE)
    rest, found = pattern.subn(f'{key} = "{value}"', rest, count=1)
    if not found:  # the shipped file always has the key; be safe anyway
        rest = f'\n{key} = "{value}"' + rest
    return head + sep + rest


def _check_options(domain: str | None, role: str | None) -> None:
    if role is not None and role not in ("hub", "relay"):
        raise ListservError(f"--role '{role}' must be 'hub' or 'relay'")
    if domain is not None:
        try:
            SiteSection(domain=domain).check("domain")
        except ValueError as error:
            raise ListservError(f"--domain {error}") from None


DEMO_WEB = "http://127.0.0.1:8080"


def init_site(folder: Path, *, now: datetime, domain: str | None = None,
              role: str | None = None, demo: bool = False) -> Created:
    """Create a site in `folder` (made if missing); refuse an existing site."""
    folder = Path(folder)
    _check_options(domain, role)
    config = folder / "listserv.toml"
    if config.exists() or (folder / "data").exists():
        raise AlreadyExists(f"{folder} is already a listserv site ({config.name} or data/ "
                            f"exists); choose another folder or remove it first")
    if folder.exists() and not folder.is_dir():
        raise ListservError(f"{folder} exists and is not a folder")
    text = render_config(domain, role, selector=f"ls{now:%Y%m}")
    if demo:  # the demo's archives, directory and initiatives bank, served by `serve`
        text = text.replace('\nurl = ""\n', f'\nurl = "{DEMO_WEB}"\n', 1)
    try:
        settings = Settings.from_toml(tomllib.loads(text), source=str(config))
    except tomllib.TOMLDecodeError as error:  # a damaged installation
        raise ConfigError(f"the shipped config/listserv.toml: {error}") from None

    folder.mkdir(parents=True, exist_ok=True)
    templates = folder / "templates"
    templates.mkdir(exist_ok=True)
    (templates / "README.txt").write_text(TEMPLATES_README, encoding="utf-8")
    for language in settings.site.languages:
        (templates / language).mkdir(exist_ok=True)
    created = Created(folder=folder, settings=settings)
    created.charters = copy_charters(folder / "charter", settings.site.languages)
    (folder / "data").mkdir()
    _write_gitignore(folder / ".gitignore")
    config.write_text(text, encoding="utf-8")

    site = Site(folder)
    site.db  # creates and migrates the database
    site.secret  # creates the key for signed links, readable by its owner only
    for _selector, algorithm, path in signing_keys(folder, settings.dkim):
        new_key(path, algorithm)  # the RSA key of [dkim] selector, readable by its owner only
    ed25519_key = folder / settings.dkim.ed25519_key_file
    if not ed25519_key.exists():  # ready for [dkim] ed25519_selector
        new_key(ed25519_key, "ed25519")
    if demo:
        created.forums = add_demo(site, now)
    site.db.conn.close()
    return created


def copy_charters(target: Path, languages: tuple[str, ...]) -> list[str]:
    """Copy the shipped `templates/xx/charter.txt` to `charter/xx.txt` for
    each site language that has one; returns the languages copied."""
    target.mkdir(exist_ok=True)
    shipped = shipped_dir("templates")
    copied = []
    for language in languages:
        source = shipped / language / "charter.txt"
        if source.is_file() and not (target / f"{language}.txt").exists():
            shutil.copyfile(source, target / f"{language}.txt")
            copied.append(language)
    return copied


def _write_gitignore(path: Path) -> None:
    if not path.exists():
        path.write_text(GITIGNORE, encoding="utf-8")
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    if not any(line.strip() in ("data/", "data", "/data", "/data/") for line in lines):
        with path.open("a", encoding="utf-8") as handle:
            handle.write(("\n" if lines else "") + GITIGNORE)


def add_demo(site: Site, now: datetime) -> list[str]:
    """The sample forums, one per path, with members already confirmed."""
    languages = site.settings.site.languages
    fallback = site.settings.site.default_language
    made = []
    with site.db.atomic():
        for slug, title, path, language, policy, description, facilitator, people \
                in DEMO_FORUMS:
            language = language if language in languages else fallback
            forums.create(site.db, slug, title=title, path=path, now=now, languages=languages,
                          language=language, policy=policy, facilitators=(facilitator,),
                          description=description)
            for address, name, lang, mode, profile, region in people:
                members.add(site.db, slug, address, now=now, languages=languages, name=name,
                            language=lang if lang in languages else language, mode=mode,
                            profile=profile, region=region, charter_accepted=True, how="demo")
            made.append(slug)
    return made
