"""DKIM: the site's signing keys, the signature on every copy, the DNS records.

`load_signer(folder, settings)` reads the keys `[dkim]` names (RSA, and
optionally a second RSA selector during a rotation and an Ed25519 key beside
the RSA one, RFC 8463) and returns a `Signer`, or None when `[dkim] selector`
is empty. A missing, unreadable or wrong kind of key is a ConfigError naming
the file, so `serve` refuses to start. `Signer.sign(data)` returns the
DKIM-Signature header lines to put on top of a message (signed with dkimpy,
relaxed/relaxed, the whole body: footers included, no `l=`). The delivery
engine calls it at hand-over time: once per stored body when copies are
identical, once per copy when the copy is personal. `new_key` writes a key
file (mode 0600); `dns_records` and `check_published` are what `listserv
dkim show` and `listserv dkim check` print. Reads key files; writes only
the key files it is asked to make; sends nothing.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from listserv.delivery import dkim_rsa
from listserv.errors import ConfigError, ListservError

log = logging.getLogger(__name__)
dkim_rsa.install()  # RSA signatures from OpenSSL: over ten times faster per copy

# RFC 6376 §5.4 and the issue: what a receiver must see unchanged. Each is
# signed as often as it occurs; OVERSIGNED ones once more, so nobody can add
# one after us (a second From, a forged unsubscribe link).
SIGNED = ("from", "to", "cc", "subject", "date", "message-id", "reply-to", "mime-version",
          "content-type", "content-transfer-encoding", "content-language", "in-reply-to",
          "references", "author", "list-id", "list-help", "list-subscribe",
          "list-unsubscribe", "list-unsubscribe-post", "list-post", "list-owner",
          "list-archive")
OVERSIGNED = ("from", "subject", "date", "message-id", "to", "cc", "reply-to", "author",
              "list-unsubscribe", "list-unsubscribe-post")
_SIGNED = frozenset(name.encode("ascii") for name in SIGNED)
_OVERSIGNED = [name.encode("ascii") for name in OVERSIGNED]
MIN_RSA_BITS = 1024
NEW_RSA_BITS = 2048
_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


@dataclass(frozen=True)
class Key:
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private: bytes  # in the form dkimpy takes: PKCS#1 PEM, or the base64 Ed25519 seed
    public: str  # base64, the p= of the DNS record
    path: Path

    @property
    def record(self) -> str:
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"


class Signer:
    """Signs messages for one domain with one or more keys."""

    def __init__(self, domain: str, keys: list[Key]):
        self.domain = domain
        self.keys = keys
        self._domain = domain.encode("ascii")

    def sign(self, data: bytes) -> bytes:
        """The DKIM-Signature header lines (CRLF-ended) for `data`, a whole
        message with CRLF line ends; the last key's signature comes first."""
        head = data.split(b"\r\n\r\n", 1)[0]
        present = [name.lower() for name in _HEADER_NAME.findall(head)]
        include = [name for name in present if name in _SIGNED]
        include += _OVERSIGNED
        lines = b""
        for key in self.keys:
            signature = dkimpy.DKIM(data).sign(
                key.selector.encode("ascii"), self._domain, key.private,
                signature_algorithm=b"rsa-sha256" if key.algorithm == "rsa"
                else b"ed25519-sha256", canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include)
            lines = signature.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") + lines
            if not lines.endswith(b"\r\n"):
                lines += b"\r\n"
        return lines


def crlf(data: bytes) -> bytes:
    """`data` with every line ending CRLF, as it goes over SMTP."""
    if b"\n" not in data.replace(b"\r\n", b""):
        return data
    return re.sub(rb"\r?\n", b"\r\n", data)


def signing_keys(folder: Path, dkim_settings) -> list[tuple[str, str, Path]]:
    """(selector, algorithm, key file) for each key `[dkim]` asks for."""
    def where(name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else Path(folder) / path

    wanted = []
    if dkim_settings.selector:
        wanted.append((dkim_settings.selector, "rsa", where(dkim_settings.key_file)))
    if dkim_settings.next_selector:
        wanted.append((dkim_settings.next_selector, "rsa", where(dkim_settings.next_key_file)))
    if dkim_settings.ed25519_selector:
        wanted.append((dkim_settings.ed25519_selector, "ed25519",
                       where(dkim_settings.ed25519_key_file)))
    return wanted


def signature_room(settings) -> int:
    """The bytes the site's DKIM signatures add to each copy, at most (0 when
    unsigned): byte budgets (lowband parts) leave this much room."""
    dkim = settings.dkim
    domain = dkim.signing_domain(settings.domain)
    wanted = [(dkim.selector, "rsa"), (dkim.next_selector, "rsa"),
              (dkim.ed25519_selector, "ed25519")]
    if not dkim.selector:
        return 0
    return sum(signature_bytes(domain, selector, algorithm)
               for selector, algorithm in wanted if selector)


ROOM_MARGIN = 16  # bytes per signature for what varies between copies (t=, folding)


@functools.lru_cache(maxsize=16)
def signature_bytes(domain: str, selector: str, algorithm: str) -> int:
    """What one signature adds to a copy, at most: measured by signing, with a
    throwaway key of the kind (RSA of NEW_RSA_BITS, as `new_key` makes), a
    message that has each SIGNED header once, so that h= names all it can.
    The field's h= list and its folding are dkimpy's, so counting them by
    hand would drift from what is sent."""
    if algorithm == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=NEW_RSA_BITS)
        data = private.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption())
    else:
        data = base64.b64encode(ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption()))
    message = "".join(f"{name}: x\r\n" for name in SIGNED).encode("ascii") + b"\r\nx\r\n"
    signer = Signer(domain, [Key(selector, algorithm, data, "", Path())])
    return len(signer.sign(message)) + ROOM_MARGIN


def load_signer(folder: Path, settings) -> Signer | None:
    """The site's signer, or None when `[dkim] selector` is empty; ConfigError
    naming the file when a key is missing, unreadable or of the wrong kind."""
    wanted = signing_keys(folder, settings.dkim)
    if not wanted:
        return None
    keys = [load_key(path, selector, algorithm) for selector, algorithm, path in wanted]
    return Signer(settings.dkim.signing_domain(settings.domain), keys)


def load_key(path: Path, selector: str, algorithm: str) -> Key:
    what = "an RSA" if algorithm == "rsa" else "an Ed25519"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; [dkim] needs {what} private key for "
                          f"selector '{selector}' (make one with 'listserv dkim new-key "
                          f"{path}')") from None
    except OSError as error:
        raise ConfigError(f"{path}: the DKIM key cannot be read: "
                          f"{error.strerror or error}") from None
    try:
        if algorithm == "ed25519" and not data.lstrip().startswith(b"-----"):
            private = ed25519.Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(data.strip(), validate=True))
        else:
            private = serialization.load_pem_private_key(data, password=None)
    except Exception as error:  # ValueError, TypeError, binascii.Error, UnsupportedAlgorithm
        raise ConfigError(f"{path}: is not {what} private key in PEM form for [dkim] selector "
                          f"'{selector}' ({type(error).__name__})") from None
    if algorithm == "rsa":
        if not isinstance(private, rsa.RSAPrivateKey):
            raise ConfigError(f"{path}: is a {_kind(private)} key; [dkim] selector "
                              f"'{selector}' needs an RSA key")
        if private.key_size < MIN_RSA_BITS:
            raise ConfigError(f"{path}: the RSA key has {private.key_size} bits; receivers "
                              f"ignore DKIM keys under {MIN_RSA_BITS} (use {NEW_RSA_BITS})")
        pem = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
        public = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return Key(selector, "rsa", pem, base64.b64encode(public).decode("ascii"), path)
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: is a {_kind(private)} key; [dkim] ed25519_selector "
                          f"'{selector}' needs an Ed25519 key")
    seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return Key(selector, "ed25519", base64.b64encode(seed),
               base64.b64encode(public).decode("ascii"), path)


def _kind(private) -> str:
    if isinstance(private, rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return "Ed25519"
    return type(private).__name__.replace("PrivateKey", "").lstrip("_") or "other"


def new_key(path: Path, algorithm: str = "rsa") -> None:
    """Write a new private key to `path` (PEM, mode 0600); never overwrites."""
    if algorithm == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=NEW_RSA_BITS)
        form = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        form = serialization.PrivateFormat.PKCS8
    pem = private.private_bytes(serialization.Encoding.PEM, form,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ListservError(f"{path} already exists; a key is never overwritten (choose "
                            f"another file name)") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def txt_strings(text: str) -> str:
    """A long TXT value as zone-file strings of at most 255 bytes each."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


def dns_records(signer: Signer | None, domain: str, postmaster: str) -> list[tuple[str, str, str]]:
    """(name, TXT value, what it is for): what the site publishes in DNS."""
    records = []
    for key in signer.keys if signer else ():
        records.append((f"{key.selector}._domainkey.{signer.domain}", key.record,
                        f"DKIM public key ({key.algorithm}, selector {key.selector})"))
    records.append((domain, "v=spf1 mx a ~all",
                    "SPF: the hosts that send for the domain (add your smarthost's "
                    "'include:' or 'ip4:' if mail leaves through one)"))
    records.append((f"_dmarc.{domain}", f"v=DMARC1; p=none; adkim=r; aspf=r; "
                    f"rua=mailto:{postmaster}",
                    "DMARC: start with p=none and read the reports; then p=quarantine"))
    return records


def check_published(signer: Signer, resolver) -> list[tuple[bool, str]]:
    """For each key: whether DNS publishes it, and one line that says so."""
    from listserv.site.dnsquery import DnsError, NoRecord, txt_records

    results = []
    for key in signer.keys:
        name = f"{key.selector}._domainkey.{signer.domain}"
        try:
            texts, _ttl = txt_records(resolver, name)
        except (DnsError, NoRecord) as error:
            results.append((False, f"{error}; publish: {key.record}"))
            continue
        found = [_tags(text) for text in texts if "p=" in text]
        if not found:
            results.append((False, f"{name}: no DKIM record among its TXT records; "
                                   f"publish: {key.record}"))
        elif any(tags.get("p", "").replace(" ", "") == key.public
                 and tags.get("k", "rsa") == key.algorithm for tags in found):
            results.append((True, f"{name}: publishes this site's {key.algorithm} key"))
        elif any(tags.get("p", "") == "" for tags in found):
            results.append((False, f"{name}: the published key is revoked (empty p=); "
                                   f"publish: {key.record}"))
        else:
            results.append((False, f"{name}: publishes another key than {key.path}; "
                                   f"publish: {key.record}"))
    return results


def _tags(text: str) -> dict[str, str]:
    tags = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags
