"""Command mail: FORUM-request, -join, -leave and -confirm+TOKEN.

Reads the commands of a message (subject, then what the person wrote in the
body, one per line, as the reply reader (replies.py) finds it above, between
or below the quote; quoted text, reply headers and signatures are not
read), carries them
out, and answers once, in the member's language, with each command and its
result. Command words are English, with the natural French, Spanish and
Portuguese ones accepted too (`aide`, `ayuda`, `ajuda`, `abonner`...).
`index`, `get REF` and `search WORDS` send, as a message of its own, what
the forum's archive has (listserv/archive/retrieval.py), else for `get` what
the `fetch` hook (Extensions.fetch) returns. Writes members and tokens through `members.py`
and `subscriptions.py`, and replies through `notify.send_template`. Will not answer automatic mail, nor
anyone but one plain mailbox.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from listserv.archive import retrieval
from listserv.delivery.notify import send_template, send_text
from listserv.errors import ListservError
from listserv.intake import subscriptions
from listserv.intake.subscriptions import result_row
from listserv.mail.headers import clean_header_value
from listserv.mail.message import Parsed
from listserv.mail.replies import body_of, fold, read_text
from listserv.site import members

log = logging.getLogger(__name__)

MAX_UNKNOWN = 5  # unrecognised lines read before giving up
MAX_COMMANDS = 20
MAX_LINES = 300

# Command words (without accents, lower case) -> (command, language they betray).
WORDS: dict[str, tuple[str, str | None]] = {}
for _command, _words in {
    "help": {None: "help info ?", "fr": "aide", "es": "ayuda", "pt": "ajuda"},
    "subscribe": {None: "subscribe sub join", "fr": "abonner abonnement inscrire",
                  "es": "suscribir suscribirse suscribirme alta inscribirme",
                  "pt": "assinar inscrever subscrever"},
    "unsubscribe": {None: "unsubscribe unsub leave signoff remove cancelar",
                    "fr": "desabonner desinscrire desabonnement resilier",
                    "es": "desuscribir desuscribirse desuscribirme baja",
                    "pt": "sair descadastrar descadastrar-me desinscrever"},
    "set": {None: "set definir configurar", "fr": "regler changer", "es": "cambiar",
            "pt": "mudar alterar"},
    "index": {None: "index indice", "fr": "sommaire"},
    "get": {None: "get", "fr": "obtenir recevoir", "es": "obtener recibir",
            "pt": "obter receber"},
    "search": {None: "search find", "fr": "chercher rechercher", "es": "buscar",
               "pt": "procurar pesquisar"},
    "end": {None: "end fin stop quit exit", "pt": "fim"},
}.items():
    for _lang, _list in _words.items():
        for _word in _list.split():
            WORDS[_word] = (_command, _lang)

SETTINGS = {"mode": "mode", "modo": "mode", "delivery": "mode", "language": "language",
            "lang": "language", "langue": "language", "idioma": "language",
            "lingua": "language", "profile": "profile", "profil": "profile",
            "perfil": "profile"}
MODES = {"each": "each", "all": "each", "chaque": "each", "cada": "each", "tous": "each",
         "todos": "each", "digest": "digest", "resume": "digest", "resumen": "digest",
         "resumo": "digest", "nomail": "nomail", "none": "nomail", "aucun": "nomail",
         "ninguno": "nomail", "nenhum": "nomail", "pause": "nomail"}
PROFILES = {"email": "email", "full": "email", "complet": "email", "completo": "email",
            "lowband": "lowband", "text": "lowband", "texte": "lowband", "texto": "lowband"}

@dataclass
class Command:
    name: str
    args: list[str] = field(default_factory=list)
    line: str = ""
    language: str | None = None


def _word(word: str) -> str:
    return fold(word).replace("\u2019", "'").strip(".,;:!")


def read_command(line: str) -> Command | None:
    """The command on one line, or None when the line is not a command."""
    words = line.split()
    if not words:
        return None
    first = _word(words[0])
    if first[:2] in ("s'", "m'"):  # "s'abonner", "m'inscrire"
        first = first[2:]
    elif first in ("se", "me") and len(words) > 1:  # "se desabonner"
        words = words[1:]
        first = _word(words[0])
    if first in ("dar", "darse", "darme") and len(words) > 2 and _word(words[2]) == "baja":
        words, first = words[2:], "baja"  # "darme de baja"
    known = WORDS.get(first)
    if known is None:
        return None
    return Command(known[0], words[1:], clean_header_value(line, 100), known[1])


def top_lines(body: str, closing: bool = False) -> list[str]:
    """The lines a person wrote (above, between or below the quote), as the
    reply reader finds them: quotes, reply headers and signatures cut."""
    return read_text(body, closing=closing).lines[:MAX_LINES]


def parse_commands(subject: str, body: str) -> tuple[list[Command], list[str]]:
    """(commands, unrecognised lines) of a command mail, in order. The subject
    counts only when it is a command; reading stops at `end`, at the
    signature, at quoted mail, or after MAX_UNKNOWN lines that are not commands."""
    commands: list[Command] = []
    unknown: list[str] = []
    first = read_command(subject)
    if first is not None and first.name != "end":
        commands.append(first)
    for line in top_lines(body):
        command = read_command(line)
        if command is None:
            unknown.append(clean_header_value(line, 100))
            if len(unknown) >= MAX_UNKNOWN:
                break
            continue
        if command.name == "end":
            break
        if any(c.name == command.name and c.args == command.args for c in commands):
            continue  # the subject repeated in the body
        commands.append(command)
        if len(commands) >= MAX_COMMANDS:
            break
    return commands, unknown


def subscribe_options(args: list[str], languages: tuple[str, ...]) -> tuple[dict, str, list]:
    """(options, problem, ignored words) of `subscribe [digest|lowband] [lang=xx]`."""
    options: dict = {}
    ignored = []
    for arg in args:
        key, eq, value = fold(arg).partition("=")
        value = value.strip(".,;")
        if eq and SETTINGS.get(key) == "language":
            if value not in languages:
                return options, f"language:{value[:10]}", ignored
            options["language"] = value
        elif eq and SETTINGS.get(key) == "mode":
            if value not in MODES:
                return options, f"mode:{value[:10]}", ignored
            options["mode"] = MODES[value]
        elif eq and SETTINGS.get(key) == "profile":
            if value not in PROFILES:
                return options, f"profile:{value[:10]}", ignored
            options["profile"] = PROFILES[value]
        elif key.strip(".,;") in MODES and MODES[key.strip(".,;")] == "digest":
            options["mode"] = "digest"
        elif key.strip(".,;") == "lowband":
            options["profile"] = "lowband"
        else:
            ignored.append(clean_header_value(arg, 30))
    return options, "", ignored[:5]


@dataclass
class Request:
    """One command mail being answered."""

    db: object
    site: object
    forum: dict
    address: str
    name: str
    message_row_id: int
    in_reply_to: str
    now: datetime
    hints: list[str] = field(default_factory=list)
    fetch: Callable | None = None  # Extensions.fetch: documents for `get` and `index`

    @property
    def languages(self) -> tuple[str, ...]:
        return self.site.settings.site.languages

    def member(self) -> dict | None:
        return members.find(self.db, self.forum["id"], self.address)

    def language(self) -> str:
        """The member's language, else a language they asked for or wrote in, else
        the forum's."""
        member = self.member()
        if member:
            return member["language"]
        for hint in self.hints:
            if hint in self.languages:
                return hint
        return self.forum["language"]

    def reply(self, name: str, ref_suffix: str = "", **context) -> None:
        send_template(self.db, self.site, name, to=self.address, language=self.language(),
                      ref=f"reply:{self.message_row_id}{ref_suffix}", now=self.now,
                      forum=self.forum, in_reply_to=self.in_reply_to, address=self.address,
                      **context)

    # -- one command each ------------------------------------------------------
    def run(self, command: Command) -> dict:
        return getattr(self, "do_" + command.name)(command)

    def do_help(self, command: Command) -> dict:
        return result_row(command.line, "help-sent")

    def do_subscribe(self, command: Command) -> dict:
        options, problem, ignored = subscribe_options(command.args, self.languages)
        if problem:
            setting, _, value = problem.partition(":")
            return result_row(command.line, "bad-value", value, setting)
        if "language" in options:
            self.hints.insert(0, options["language"])
        elif command.language:
            options["language"] = self.language()
        options["name"] = self.name
        outcome = subscriptions.request_subscription(
            self.db, self.site, self.forum, self.address, options, self.now, "email",
            ref=f"reply:{self.message_row_id}:confirm", in_reply_to=self.in_reply_to)
        code = {"sent": "confirm-sent", "member": "already-member"}.get(outcome, outcome)
        return result_row(command.line, code, ignored=ignored)

    def do_unsubscribe(self, command: Command) -> dict:
        outcome = subscriptions.request_unsubscription(
            self.db, self.site, self.forum, self.address, self.now,
            ref=f"reply:{self.message_row_id}:confirm", in_reply_to=self.in_reply_to)
        return result_row(command.line, "leave-confirm-sent" if outcome == "sent" else outcome)

    def do_set(self, command: Command) -> dict:
        words = [w for arg in command.args for w in fold(arg).split("=") if w]
        if len(words) < 2 or words[0] not in SETTINGS:
            return result_row(command.line, "set-usage")
        setting, value = SETTINGS[words[0]], words[1].strip(".,;")
        member = self.member()
        if member is None:
            return result_row(command.line, "not-member")
        table = {"mode": MODES, "profile": PROFILES,
                 "language": {lang: lang for lang in self.languages}}[setting]
        if value not in table:
            return result_row(command.line, "bad-value", value[:10], setting)
        try:
            members.update(self.db, member["id"], {setting: table[value]}, self.languages)
        except ListservError:
            return result_row(command.line, "bad-value", value[:10], setting)
        members.record_event(self.db, self.now, self.forum["id"], f"set-{setting}",
                             member["address"], table[value])
        return result_row(command.line, "set-done", table[value], setting)

    def do_index(self, command: Command) -> dict:
        found = retrieval.forum_index(self.db, self.site, self.forum, self.address,
                                      self.language())
        if found is not None:
            self.send_found(found, ":index")
            return result_row(command.line, "index-sent")
        if self.send_document("index", ":index"):  # nothing here to read: What's New's
            return result_row(command.line, "index-sent")
        return result_row(command.line, "index-empty")

    def do_get(self, command: Command) -> dict:
        if not command.args:
            return result_row(command.line, "get-usage")
        ref = clean_header_value(command.args[0], 40).strip(".,;:()<>\"'")
        found = retrieval.document(self.db, self.site, self.forum, ref, self.address,
                                   self.language()) if ref else None
        if found is not None:
            self.send_found(found, f":get:{ref.lower()}")
            return result_row(command.line, "get-sent", ref)
        if ref and self.send_document(ref, f":get:{ref.lower()}"):
            return result_row(command.line, "get-sent", ref)
        return result_row(command.line, "get-none", ref or command.args[0][:40])

    def do_search(self, command: Command) -> dict:
        words = retrieval.clip(" ".join(command.args))
        try:
            found = retrieval.search_document(self.db, self.site, self.forum, words,
                                              self.address, self.language())
        except retrieval.SearchError:
            return result_row(command.line, "search-usage")
        if found is None:
            return result_row(command.line, "search-none", clean_header_value(words, 60))
        self.send_found(found, f":search:{zlib.crc32(words.encode()):08x}")
        return result_row(command.line, "search-sent", clean_header_value(words, 60))

    def send_found(self, found: tuple[str, str], ref_suffix: str) -> None:
        """Send a document of the archive: whole, or in parts for a lowband member."""
        member = self.member()
        retrieval.send_document(
            self.db, self.site, to=self.address, found=found,
            ref=f"reply:{self.message_row_id}{ref_suffix}", now=self.now, forum=self.forum,
            in_reply_to=self.in_reply_to, lowband=bool(member and member["profile"] == "lowband"),
            budget=self.site.settings.delivery.lowband_budget)

    def send_document(self, ref: str, ref_suffix: str) -> bool:
        """Send what `fetch` returns for `ref` as its own message; False if nothing."""
        found = self.fetch(self.db, self.site, ref, self.language()) if self.fetch else None
        if found is None:
            return False
        subject, text = found
        send_text(self.db, self.site, to=self.address, subject=subject, text=text,
                  ref=f"reply:{self.message_row_id}{ref_suffix}", now=self.now,
                  forum=self.forum, in_reply_to=self.in_reply_to)
        return True


def _mailbox(parsed: Parsed, site, what: str, message_row_id: int) -> tuple[str, str] | None:
    """The one plain mailbox we may answer, or None (logged) when we must not."""
    if parsed.auto or parsed.bulk or parsed.bounce:
        log.info("message %s to %s is automatic mail (%s); not answered", message_row_id,
                 what, parsed.auto or parsed.bulk or "bounce")
        return None
    if parsed.sender is None:
        log.info("message %s to %s has no single sender address; not answered",
                 message_row_id, what)
        return None
    name, address = parsed.sender
    if address.endswith("@" + site.settings.domain.lower()):
        log.info("message %s to %s comes from our own domain (%s); not answered",
                 message_row_id, what, address)
        return None
    return clean_header_value(name, 120), address


def _own_envelope(db, message_row_id: int, address: str) -> bool:
    """Whether the message's envelope sender is `address` (its From): a mail
    client's unsubscribe button sends it so; a forger writing someone else's
    From usually does not."""
    row = db.execute("SELECT mail_from FROM messages WHERE id = ?", [message_row_id]).fetchone()
    return row is not None and (row[0] or "").strip("<>").lower() == address.lower()


def handle_request(db, site, forum: dict, kind: str, parsed: Parsed, message_row_id: int,
                   now: datetime, fetch: Callable | None = None) -> None:
    """Carry out the commands of a mail to FORUM-request ("request"), FORUM-join
    ("join") or FORUM-leave ("leave") and answer once."""
    sender = _mailbox(parsed, site, f"{forum['slug']}-{kind}", message_row_id)
    if sender is None:
        return
    name, address = sender
    if kind == "leave" and _own_envelope(db, message_row_id, address):
        from listserv.intake.leaving import leave_at_once  # one mail, as unsubscribe buttons send
        if leave_at_once(db, site, forum, address, now, "leave-address",
                         ref=f"reply:{message_row_id}", in_reply_to=parsed.message_id):
            log.info("message %s: %s left %s at once", message_row_id, address, forum["slug"])
            return
    commands, unknown = parse_commands(parsed.subject, body_of(parsed.message))
    if kind == "join":
        wanted = [c for c in commands if c.name == "subscribe"]
        commands, unknown = wanted[:1] or [Command("subscribe", [], "subscribe")], []
    elif kind == "leave":
        commands, unknown = [Command("unsubscribe", [], "unsubscribe")], []
    request = Request(db, site, forum, address, name, message_row_id, parsed.message_id, now,
                      fetch=fetch,
                      hints=[c.language for c in commands if c.language])
    real = [c for c in commands if c.name != "help"]
    if not real:
        request.reply("help.txt", languages=list(request.languages))
        log.info("message %s: help sent to %s for %s", message_row_id, address, forum["slug"])
        return
    results = [request.run(command) for command in commands]
    log.info("message %s: %s ran %s on %s", message_row_id, address,
             ", ".join(c.name for c in commands), forum["slug"])
    if all(r["code"] in ("confirm-sent", "leave-confirm-sent") for r in results):
        return  # the confirmation request is the answer
    request.reply("command-results.txt", results=results, unknown=unknown[:3],
                  languages=list(request.languages))
    if any(c.name == "help" for c in commands):
        request.reply("help.txt", ":help", languages=list(request.languages))


def handle_confirm(db, site, forum: dict, token: str, parsed: Parsed, message_row_id: int,
                   now: datetime) -> bool:
    """Carry out a mail to FORUM-confirm+TOKEN when TOKEN confirms a subscription
    or an unsubscription; False when the token is not one of those (it may be
    a facilitator's decision)."""
    if subscriptions.token_purpose(db, token) is None:
        return False
    sender = _mailbox(parsed, site, f"{forum['slug']}-confirm", message_row_id)
    if sender is None:
        return True
    outcome = subscriptions.confirm(db, site, forum, token, sender[1], now,
                                    ref=f"reply:{message_row_id}",
                                    in_reply_to=parsed.message_id)
    log.info("message %s: confirmation on %s from %s: %s", message_row_id, forum["slug"],
             sender[1], outcome)
    return True
