"""Checking a template before the server may use it.

`check_source(site, language, name, source)` says whether a site version of
template `name` is fit to use, with every problem as `xx/NAME:LINE: what`.
In order: the name is one the server uses and the text is not too big; it
parses; nothing in it reaches for private names (`''.__class__.__mro__`,
`__globals__`, `_anything`), it includes, imports or extends only other
templates by plain name (never `../` or `/etc/...`), its loops over
`range` cannot multiply into an enormous number of turns, and it writes no
number above the sandbox's limits; then it is rendered in the sandbox with
the sample data of samples.py (StrictUndefined: a misspelt name is an
error), within `[templates] render_limit` seconds and a bounded output; a
mail template must begin with its `Subject:` line, and an HTML template may
use only the tags and attributes bleach keeps. The preview is that
rendering. Reads template files; writes nothing.
"""

from __future__ import annotations

import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache

import jinja2
from jinja2 import meta, nodes

from digests import samples
from listserv.delivery.distribution import ALLOWED_ATTRIBUTES, ALLOWED_TAGS
from listserv.mail.templates import MAX_NUMBER, LimitedSandbox, render_capped, split_mail
from listserv.site.resources import shipped_dir

MAX_SOURCE = 64 * 1024
MAX_PREVIEW_OUTPUT = 1024 * 1024
MAX_LOOP_TURNS = 100_000
NOT_EDITABLE = frozenset({"charter.txt", "README.txt"})  # the charter lives in charter/
HTML_FRAME = frozenset({"html", "head", "body", "title", "meta"})
_TAG = re.compile(r"<\s*(/?)\s*([^\s/>]*)([^>]*)>")
_ATTRIBUTE = re.compile(r"([^\s=/]+)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s>]+))?")


class SampleUndefined(jinja2.ChainableUndefined):
    """For a template without sample data: any name is an empty, callable,
    iterable nothing, so every part of the template can still be run."""

    def __call__(self, *args, **kwargs):
        return self


class TooSlow(Exception):
    """The rendering ran past its time budget."""


@dataclass
class Checked:
    language: str
    name: str
    errors: list[str] = field(default_factory=list)
    preview: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def label(self) -> str:
        return f"{self.language}/{self.name}"


@lru_cache(maxsize=1)
def editable_names() -> frozenset[str]:
    """Every template name the server uses (those shipped, in any language)."""
    shipped = shipped_dir("templates")
    return frozenset(path.name for folder in shipped.iterdir() if folder.is_dir()
                     for path in folder.iterdir()
                     if path.is_file() and path.name not in NOT_EDITABLE
                     and not is_web_page(path.name))


@lru_cache(maxsize=1)
def web_page_names() -> frozenset[str]:
    """The archive's page templates shipped (checked as web pages, not as mail)."""
    shipped = shipped_dir("templates")
    return frozenset(path.name for folder in shipped.iterdir() if folder.is_dir()
                     for path in folder.iterdir() if path.is_file() and is_web_page(path.name))


def site_template_names() -> frozenset[str]:
    """Every name a file in a site's templates/<language>/ may have to be used:
    the mail templates and the archive's page templates."""
    return editable_names() | web_page_names()


def check_template(site, language: str, name: str, source: str,
                   budget: float | None = None) -> Checked:
    """Check a site's template by its kind: a web page as a web page, else as mail."""
    if is_web_page(name):
        return check_web_page(site, language, name, source, budget)
    return check_source(site, language, name, source, budget)


def is_web_page(name: str) -> bool:
    """The archive's page templates (archive-*.html) make web pages, not mail:
    the mail rules (no forms, no <link>, no class) do not apply to them, and
    they are not edited by email."""
    return name.startswith("archive-") and name.endswith(".html")


def shipped_source(name: str, language: str) -> str | None:
    shipped = shipped_dir("templates")
    for lang in (language, "en"):
        path = shipped / lang / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return None


def is_mail(name: str, language: str) -> bool:
    """A mail template: the shipped one begins with a Subject: line."""
    source = shipped_source(name, language) or ""
    return any(line.startswith("Subject:") for line in source.splitlines()[:12])


def check_source(site, language: str, name: str, source: str,
                 budget: float | None = None) -> Checked:
    """Check one template text as the site's `language`/`name`."""
    result = Checked(language, name)
    where = result.label
    if language not in site.settings.site.languages:
        result.errors.append(f"{where}: '{language}' is not one of the site's languages "
                             f"({', '.join(site.settings.site.languages)})")
        return result
    if name not in editable_names() or "/" in name or "\\" in name:
        result.errors.append(f"{where}: no template of that name is used by the server "
                             f"(see 'listserv templates list')")
        return result
    if len(source.encode("utf-8")) > MAX_SOURCE:
        result.errors.append(f"{where}: the template is larger than {MAX_SOURCE // 1024} KB")
        return result
    sample = samples.context(site, name, language)
    env = _environment(site, language, name, source, where, lenient=sample is None)
    try:
        tree = env.parse(source, name=name, filename=where)
    except jinja2.TemplateSyntaxError as error:
        result.errors.append(f"{where}:{error.lineno}: {error.message}")
        return result
    result.errors += [f"{where}:{line}: {problem}" for line, problem in static_problems(tree)]
    if sample is None:
        result.errors += _unknown_names(tree, name, language, where)
    if name.endswith(".html"):
        result.errors += [f"{where}:{line}: {problem}" for line, problem in _markup(tree)]
    if result.errors:
        return result
    seconds = budget if budget is not None else site.settings.templates.render_seconds
    try:
        output = _render(env, tree, name, where, sample or {}, seconds)
    except TooSlow:
        result.errors.append(f"{where}: rendering took longer than {seconds:g}s with sample "
                             f"data (an enormous loop?); refused")
        return result
    except Exception as error:  # any failure of the template itself
        line = _template_line(error, where)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        result.errors.append(f"{where}:{line or '?'}: {type(error).__name__}: {message}"[:300])
        return result
    if is_mail(name, language):
        try:
            split_mail(name, language, output)
        except Exception as error:
            result.errors.append(f"{where}:1: {error}")
            return result
    if name.endswith(".html"):
        result.errors += [f"{where}: {problem}" for problem in markup_problems(output)]
    result.preview = output[:20_000]
    return result


def check_web_page(site, language: str, name: str, source: str,
                   budget: float | None = None) -> Checked:
    """Check an archive page template (archive-*.html) as a web page: it parses,
    reaches for nothing private, renders autoescaped in the sandbox with the
    sample data of listserv/archive/page_samples.py (StrictUndefined), and the
    hostile sample values come out as text, never as markup or script."""
    from listserv.archive.page_samples import HOSTILE, page_context
    result = Checked(language, name)
    where = result.label
    sample = page_context(site, name, language)
    if sample is None:
        result.errors.append(f"{where}: no archive page of that name is written by the server")
        return result
    env = _environment(site, language, name, source, where, lenient=False)
    try:
        tree = env.parse(source, name=name, filename=where)
    except jinja2.TemplateSyntaxError as error:
        result.errors.append(f"{where}:{error.lineno}: {error.message}")
        return result
    result.errors += [f"{where}:{line}: {problem}" for line, problem in static_problems(tree)]
    if result.errors:
        return result
    seconds = budget if budget is not None else site.settings.templates.render_seconds
    try:
        output = _render(env, tree, name, where, sample, seconds)
    except TooSlow:
        result.errors.append(f"{where}: rendering took longer than {seconds:g}s with sample "
                             f"data (an enormous loop?); refused")
        return result
    except Exception as error:  # any failure of the template itself
        line = _template_line(error, where)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        result.errors.append(f"{where}:{line or '?'}: {type(error).__name__}: {message}"[:300])
        return result
    lowered = output.lower()
    if HOSTILE in output or "<script" in lowered:
        result.errors.append(f"{where}: a value is printed as markup (a subject with <script> "
                             f"came out unescaped); remove '| safe' or 'autoescape false'")
    for bad in ("javascript:", "<iframe", "<object", "<embed"):
        if bad in lowered:
            result.errors.append(f"{where}: the page contains '{bad}'; archive pages run no "
                                 f"script and embed nothing")
    if "<html" in lowered and "</html>" not in lowered:
        result.errors.append(f"{where}: the page does not end with </html>")
    result.preview = output[:20_000]
    return result


def _environment(site, language: str, name: str, source: str, where: str, lenient: bool):
    """The sandbox the server renders with, reading `source` as `name` (its
    code carries `where` as file name, for line numbers) and other templates
    from the site's active copies and the shipped ones."""
    shipped = shipped_dir("templates")
    search = [str(folder / lang) for lang in dict.fromkeys((language, "en"))
              for folder in (site.active_templates, shipped)]
    this = jinja2.FunctionLoader(lambda wanted: (source, where, lambda: True)
                                 if wanted == name else None)
    loader = jinja2.ChoiceLoader([this, jinja2.FileSystemLoader(search)])
    return LimitedSandbox(
        loader=loader, undefined=SampleUndefined if lenient else jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False),
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


@contextmanager
def time_budget(seconds: float):
    """Raise TooSlow inside the code running in this thread once `seconds` pass."""
    deadline = time.monotonic() + seconds

    def tracer(frame, event, arg):
        if time.monotonic() > deadline:
            raise TooSlow()
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(previous)


def _render(env, tree, name: str, where: str, context: dict, seconds: float) -> str:
    code = env.compile(tree, name=name, filename=where)
    template = env.template_class.from_code(env, code, env.make_globals(None))
    template.name, template.filename = name, where
    with time_budget(seconds):
        return render_capped(template, context, MAX_PREVIEW_OUTPUT)


def _template_line(error: BaseException, filename: str) -> int | None:
    line = getattr(error, "lineno", None)
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def static_problems(tree: nodes.Template) -> list[tuple[int, str]]:
    """What the template reaches for that no template may: (line, problem)."""
    problems = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name, nodes.Const)):
        value = {nodes.Getattr: lambda n: n.attr, nodes.Name: lambda n: n.name}.get(
            type(node), lambda n: None)(node)
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            value = node.arg.value
        if isinstance(value, str) and value.startswith("_"):
            problems.append((node.lineno, f"'{value}' is private: templates may not use "
                                          f"names that begin with '_'"))
        if isinstance(node, nodes.Const):
            if isinstance(node.value, str) and "__" in node.value:
                problems.append((node.lineno, "text with '__' is not allowed in a template "
                                              "expression (it can reach private names)"))
            if isinstance(node.value, (int, float)) and not isinstance(node.value, bool) \
                    and abs(node.value) > MAX_NUMBER:
                problems.append((node.lineno, f"the number {node.value} is larger than "
                                              f"templates may use ({MAX_NUMBER})"))
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        what = type(node).__name__.lower().replace("fromimport", "import")
        target = node.template
        if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
            problems.append((node.lineno, f"{what} must name a template in quotes"))
            continue
        value = target.value
        if "/" in value or "\\" in value or ".." in value or (
                value not in editable_names() and not is_web_page(value)):
            problems.append((node.lineno, f"{what} of '{value}' refused: a template may "
                                          f"{what} only another template, by its plain name"))
    problems += _loops(tree, 1)
    return sorted(set(problems))


def _range_turns(node) -> int:
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) \
            and node.node.name == "range":
        args = [a.value for a in node.args if isinstance(a, nodes.Const)]
        if len(args) != len(node.args) or not all(isinstance(a, int) for a in args) \
                or node.kwargs or node.dyn_args:
            return MAX_LOOP_TURNS + 1  # a range the data decides: refused below
        try:
            return len(range(*args))
        except (TypeError, ValueError):
            return MAX_LOOP_TURNS + 1
    return 1


def _loops(node, turns: int) -> list[tuple[int, str]]:
    problems = []
    for child in node.iter_child_nodes():
        inner = turns
        if isinstance(child, nodes.For):
            inner = turns * _range_turns(child.iter)
            if inner > MAX_LOOP_TURNS:
                problems.append((child.lineno, f"loops over range() here could run more than "
                                               f"{MAX_LOOP_TURNS} times (ranges must be "
                                               f"small numbers written in the template)"))
                continue
        problems += _loops(child, inner)
    return problems


def _unknown_names(tree, name: str, language: str, where: str) -> list[str]:
    """For a template without sample data: names the shipped one is not given."""
    shipped = shipped_source(name, language)
    if shipped is None:
        return []
    env = LimitedSandbox()
    try:
        given = meta.find_undeclared_variables(env.parse(shipped))
    except jinja2.TemplateSyntaxError:
        return []
    extra = sorted(meta.find_undeclared_variables(tree) - given - set(env.globals))
    return [f"{where}: '{n}' is not given to this template (it is given: "
            f"{', '.join(sorted(given)) or 'nothing'})" for n in extra]


def markup_problems(html: str) -> list[str]:
    """Tags and attributes bleach would remove from this HTML."""
    return [problem for _, problem in _tag_problems(html)]


def _tag_problems(html: str) -> list[tuple[int, str]]:
    """(offset, problem) for each tag or attribute bleach would remove."""
    problems = []
    for match in _TAG.finditer(html):
        tag, rest = match.group(2).lower(), match.group(3)
        if tag.startswith("!") or not tag:
            continue
        if tag not in ALLOWED_TAGS and tag not in HTML_FRAME:
            problems.append((match.start(), f"the tag <{tag}> is not allowed in HTML templates"))
            continue
        allowed = set(ALLOWED_ATTRIBUTES.get(tag, ())) | (
            {"charset", "lang"} if tag in HTML_FRAME else set())
        for attribute, value in _ATTRIBUTE.findall(rest):
            if attribute.lower() not in allowed:
                problems.append((match.start(), f"the attribute '{attribute}' of <{tag}> is "
                                                f"not allowed"))
            elif attribute.lower() == "href" and re.match(
                    r"^\W*(javascript|data|vbscript):", value.strip("\"'"), re.IGNORECASE):
                problems.append((match.start(), "links may only be http:, https: or mailto:"))
    return problems


def _markup(tree) -> list[tuple[int, str]]:
    """Markup problems in the template's own text, whatever branch it is in;
    every value printed stands for 'X'."""
    pieces, starts = [], []
    size = 0
    for node in tree.find_all(nodes.Output):
        for child in node.nodes:
            text = child.data if isinstance(child, nodes.TemplateData) else "X"
            starts.append((size, child.lineno))
            pieces.append(text)
            size += len(text)
    found = []
    for offset, problem in _tag_problems("".join(pieces)):
        line = max((ln for at, ln in starts if at <= offset), default=1)
        found.append((line, problem))
    return sorted(set(found))
