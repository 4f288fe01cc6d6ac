"""Jinja2 templates in the sandbox, looked up by language.

A template NAME in language xx is found in the site's `templates/xx/NAME`,
then the shipped `templates/xx/NAME`, then the shipped `templates/en/NAME`.
Mail templates begin with a `Subject:` line and a blank line. Reads template
files; writes nothing. Templates cannot read files or run code: they run in
Jinja2's SandboxedEnvironment with StrictUndefined, and HTML templates are
autoescaped; the sandbox also refuses to build enormous strings or numbers
with `*` and `**`, and a rendering longer than MAX_OUTPUT stops with an
error. A site template that fails is never sent: the shipped one of the same
name is rendered instead (and the failure logged). The site's templates are
checked before the server uses them (digests/templating.py keeps the
checked copies, which callers pass as `site_templates`).
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from itertools import islice
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from listserv.errors import ListservError
from listserv.site.resources import shipped_dir

log = logging.getLogger(__name__)

MAX_OUTPUT = 32 * 1024 * 1024  # characters one rendering may produce
MAX_SEQUENCE = 1_000_000  # the longest string or list `*` may make
MAX_NUMBER = 10_000_000  # the largest number arithmetic in a template may make
MAX_ARGUMENT = 100_000  # the largest width or count given to center, indent, slice, batch
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(\d{6,}|\*)|\.\d{6,}|\{[^{}]*:[^{}]*\d{6,}")


class TemplateError(ListservError):
    """A template is missing or does not render; str() names file and line."""


class LimitedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, also refusing what would exhaust the server: huge
    strings or numbers from `*`, `**`, `+`, `%` and format widths, huge
    arguments to center/indent/slice/batch, and `lipsum`."""

    intercepted_binops = frozenset({"*", "**", "+", "-", "%"})

    def __init__(self, **options):
        super().__init__(**options)
        self.globals.pop("lipsum", None)
        for name in ("center", "indent", "slice", "batch", "format", "wordwrap", "truncate"):
            self.filters[name] = _guarded(self.filters[name])

    def call_binop(self, context, operator, left, right):
        if operator == "**" and _number(right) and abs(right) > 1000:
            raise SecurityError(f"the exponent {right} is too large for a template")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(times, int) \
                        and len(seq) * times > MAX_SEQUENCE:
                    raise SecurityError("a template may not build a string or list "
                                        f"longer than {MAX_SEQUENCE} with '*'")
        if operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise SecurityError("a format width this large is not allowed in a template")
        result = super().call_binop(context, operator, left, right)
        if _number(result) and abs(result) > MAX_NUMBER:
            raise SecurityError(f"a template may not compute numbers above {MAX_NUMBER}")
        return result

    def wrap_str_format(self, value):
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _WIDE_FORMAT.search(owner):
            raise SecurityError("a format width this large is not allowed in a template")
        return super().wrap_str_format(value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _guarded(fn):
    """A filter whose number arguments are at most MAX_ARGUMENT, and whose
    format string (for `format`) asks for no enormous width."""
    def guarded(*args, **kwargs):
        values = [v for v in args[1:] if not isinstance(v, (str, bytes))] \
            + list(kwargs.values())
        offset = 1 if getattr(fn, "jinja_pass_arg", None) else 0
        if fn.__name__ == "do_format" and isinstance(args[offset], str) \
                and _WIDE_FORMAT.search(args[offset]):
            raise SecurityError("a format width this large is not allowed in a template")
        if any(_number(v) and abs(v) > MAX_ARGUMENT for v in values):
            raise SecurityError(f"'{fn.__name__[3:]}' was given a number above "
                                f"{MAX_ARGUMENT}; templates may not use one that large")
        return fn(*args, **kwargs)
    for attribute in ("jinja_pass_arg",):
        if hasattr(fn, attribute):
            setattr(guarded, attribute, getattr(fn, attribute))
    guarded.__name__ = fn.__name__
    return guarded


@lru_cache(maxsize=64)
def environment(site_templates: Path | None, language: str) -> SandboxedEnvironment:
    shipped = shipped_dir("templates")
    search = []
    for lang in dict.fromkeys((language, "en")):
        if site_templates is not None:
            search.append(site_templates / lang)
        search.append(shipped / lang)
    return LimitedSandbox(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(site_templates: Path | None, name: str, language: str, **context) -> str:
    """Render template `name` in `language` (falling back to English); when the
    site's template fails, the shipped one is rendered instead."""
    try:
        return _render(site_templates, name, language, context)
    except TemplateError as error:
        if site_templates is None:
            raise
        log.error("site template %s (%s) failed, the shipped one is used: %s", name,
                  language, error)
        return _render(None, name, language, context)


def render_capped(template: jinja2.Template, context: dict, limit: int = MAX_OUTPUT) -> str:
    """Render, stopping with TemplateError once the output passes `limit` characters."""
    parts, size = [], 0
    chunks = template.generate(**context)
    while True:
        batch = "".join(islice(chunks, 1024))  # joined in C: a few checks per rendering
        if not batch:
            return "".join(parts)
        size += len(batch)
        if size > limit:
            raise TemplateError(f"template '{template.name}' produced more than {limit} "
                                f"characters; is there an enormous loop?")
        parts.append(batch)


def _render(site_templates: Path | None, name: str, language: str, context: dict) -> str:
    env = environment(Path(site_templates) if site_templates else None, language or "en")
    try:
        return render_capped(env.get_template(name), context)
    except TemplateError:
        raise
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
    try:
        return split_mail(name, language, render(site_templates, name, language, **context))
    except TemplateError:
        if site_templates is None:
            raise
        return split_mail(name, language, render(None, name, language, **context))


def split_mail(name: str, language: str, text: str) -> tuple[str, str]:
    """(subject, body) of a rendered mail template; TemplateError when its
    first line is not 'Subject: ...' followed by a blank line."""
    head, sep, body = text.partition("\n\n")
    if not sep or not head.lower().startswith("subject:") or "\n" in head.strip():
        raise TemplateError(f"template '{name}' ({language}) must begin with a "
                            f"'Subject:' line and a blank line")
    return head.split(":", 1)[1].strip(), body
