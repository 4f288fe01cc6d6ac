"""Files in the site's templates/ folder that match no template.

A template is used only under its exact name in a language folder
(`templates/fr/welcome.txt`); a misspelt file (`templates/fr/welcom.txt`), a
file outside a language folder or a folder for a language the site does
not have is never used, and nothing else would say so. `stray_templates`
lists them, each with the reason and, for a misspelt name, the nearest
template names. Read by `listserv templates check` and `listserv status`.
Reads the folder only; moves or deletes nothing. Hidden files (editors'
and our own temporary files) are left out.
"""

from __future__ import annotations

import difflib

from digests.template_check import NOT_EDITABLE, site_template_names

TOP_LEVEL = frozenset({"README.txt"})  # written there by `listserv init`


def stray_templates(site) -> list[dict]:
    """[{'path': 'fr/welcom.txt', 'reason': ...}] for every file that is no template."""
    folder = site.templates
    if not folder.is_dir():
        return []
    languages = site.settings.site.languages
    names = site_template_names()
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if len(relative.parts) == 1:
            if relative.name not in TOP_LEVEL:
                found.append(_stray(relative, "is not in a language folder; put it in "
                                    f"templates/{languages[0]}/ or another language's"))
            continue
        language, name = relative.parts[0], "/".join(relative.parts[1:])
        if language not in languages:
            found.append(_stray(relative, f"'{language}' is not one of [site] languages "
                                          f"({', '.join(languages)})"))
        elif name == "charter.txt":
            found.append(_stray(relative, f"the charter is read from charter/{language}.txt, "
                                          f"not from templates/"))
        elif name not in names and name not in NOT_EDITABLE:
            near = difflib.get_close_matches(name, sorted(names), n=2, cutoff=0.8)
            hint = f"; did you mean {' or '.join(near)}?" if near else \
                " (see 'listserv templates list')"
            found.append(_stray(relative, f"no template is called '{name}'{hint}"))
    return found


def _stray(relative, reason: str) -> dict:
    return {"path": str(relative), "reason": reason}
