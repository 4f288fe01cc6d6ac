"""How we talk to the smarthost: TLS, certificate checks and SMTP AUTH.

`[delivery] tls` says how a connection to the smarthost is secured:
"opportunistic" (the default: STARTTLS when the server offers it, its
certificate not checked, as Postfix's `may`), "none" (never), "starttls"
(required: a server that does not offer it is not used; a submission
service on 587) or "tls" (TLS from the first byte, port 465). With
"starttls" and "tls", `verify` (default true) checks the certificate chain
against the system's CAs (or `ca_file`) and the host name. `user` and
`password_file` log in with SMTP AUTH, only over a verified or at least
encrypted channel. `routes` keep opportunistic TLS without a login.

`Secure` is that configuration for one destination, plain data so it can
be handed to the handover process; `client_options` turns it into
aiosmtplib's arguments. A failed TLS or login makes the destination
unavailable for now (`smtpout.Unavailable`), so its rows are deferred with
the reason, which `listserv queue` shows. Reads the password file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from listserv.errors import ConfigError

MODES = ("opportunistic", "none", "starttls", "tls")


@dataclass(frozen=True)
class Secure:
    """TLS and AUTH for one destination."""

    tls: str = "opportunistic"
    verify: bool = True
    ca_file: str = ""  # absolute path, or '' for the system's CAs
    user: str = ""
    password_file: str = ""  # absolute path

    def as_dict(self) -> dict:
        return asdict(self)

    def password(self) -> str:
        return read_password(Path(self.password_file)) if self.password_file else ""


OPPORTUNISTIC = Secure()


def read_password(path: Path) -> str:
    """The first line of the password file; ConfigError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"[delivery] password_file {path} cannot be read: {error}") \
            from None
    password = text.splitlines()[0].strip() if text.strip() else ""
    if not password:
        raise ConfigError(f"[delivery] password_file {path} is empty; put the password "
                          f"on its first line")
    return password


def secure_destinations(site) -> dict[str, Secure]:
    """{smarthost "host:port": its Secure}, checked now (a password file that
    cannot be read stops serve before anything is sent)."""
    delivery = site.settings.delivery
    if not delivery.smarthost:
        return {}

    def place(name: str) -> str:
        return str((site.folder / name).resolve()) if name else ""

    secure = Secure(tls=delivery.tls, verify=delivery.verify, ca_file=place(delivery.ca_file),
                    user=delivery.user, password_file=place(delivery.password_file))
    if secure.ca_file and not Path(secure.ca_file).is_file():
        raise ConfigError(f"{site.settings.source}: [delivery] ca_file {secure.ca_file} "
                          f"does not exist")
    secure.password()  # readable now, or the error is said now
    return {delivery.smarthost: secure}


def client_options(secure: Secure) -> dict:
    """Keyword arguments for aiosmtplib.SMTP (besides host, port, timeouts)."""
    options: dict = {"validate_certs": False, "start_tls": None, "use_tls": False}
    if secure.tls == "none":
        options["start_tls"] = False
    elif secure.tls in ("starttls", "tls"):
        options["start_tls"] = secure.tls == "starttls"
        options["use_tls"] = secure.tls == "tls"
        options["validate_certs"] = secure.verify
        if secure.verify and secure.ca_file:
            options["cert_bundle"] = secure.ca_file
    if secure.user:
        options["username"] = secure.user
        options["password"] = secure.password()
    return options
