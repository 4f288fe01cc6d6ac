"""Jinja2 templates in the sandbox, looked up by language.

A template NAME in language xx is found in the site's `templates/xx/NAME`,
then the shipped `templates/xx/NAME`, then the shipped `templates/en/NAME`.
Mail templates begin with a `Subject:` line and a blank line. Reads template
files; writes nothing. Templates cannot read files or run code: they run in
Jinja2's SandboxedEnvironment with StrictUndefined, and HTML templates are
autoescaped.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from listserv.errors import ListservError
from listserv.resources import shipped_dir


class TemplateError(ListservError):
    """A template is missing or does not render; str() names file and line."""


@lru_cache(maxsize=64)
def environment(site_templates: Path | None, language: str) -> SandboxedEnvironment:
    shipped = shipped_dir("templates")
    search = []
    for lang in dict.fromkeys((language, "en")):
        if site_templates is not None:
            search.append(site_templates / lang)
        search.append(shipped / lang)
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(site_templates: Path | None, name: str, language: str, **context) -> str:
    """Render template `name` in `language` (falling back to English)."""
    env = environment(Path(site_templates) if site_templates else None, language or "en")
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template '{name}' not found for language '{language}'") from None
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(f"{error.filename or name}:{error.lineno}: {error.message}") from None
    except Exception as error:  # sandbox refusals, undefined names, runtime errors
        raise TemplateError(f"template '{name}' ({language}) failed: "
                            f"{type(error).__name__}: {error}"[:400]) from None


def render_mail(site_templates: Path | None, name: str, language: str,
                **context) -> tuple[str, str]:
    """Render a mail template into (subject, body)."""
    text = render(site_templates, name, language, **context)
    head, sep, body = text.partition("\n\n")
    if not sep or not head.lower().startswith("subject:"):
        raise TemplateError(f"template '{name}' ({language}) must begin with a "
                            f"'Subject:' line and a blank line")
    return head.split(":", 1)[1].strip(), body
