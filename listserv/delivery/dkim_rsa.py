"""The RSA step of dkimpy's signing, done by OpenSSL.

dkimpy does what DKIM asks of a signer (canonicalisation, the body hash,
the h= list, folding) and then signs the header hash with its own
pure-Python RSA: about 13 ms per RSA-2048 signature on the machines we
measure, against under 1 ms for the same signature from OpenSSL, through
`cryptography` (already what makes and reads our keys). Every personal copy
is signed, so that step is most of a copy's cost. `install` has dkimpy
parse a PEM key once (cached) into its own fields plus the OpenSSL key, and
sign with OpenSSL when it has one. PKCS#1 v1.5 signatures are deterministic,
so the bytes are the ones dkimpy would have written; any key or hash it
does not know here goes dkimpy's own way. dkimpy's names are replaced only
when they are there as expected (dkimpy 1.x); otherwise nothing changes.
Reads and writes nothing.
"""

from __future__ import annotations

import functools

import dkim as dkimpy
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

_HASHES = {"sha256": hashes.SHA256, "sha1": hashes.SHA1}
_PURE_PARSE = getattr(dkimpy, "parse_pem_private_key", None)
_PURE_SIGN = getattr(dkimpy, "RSASSA_PKCS1_v1_5_sign", None)


class OpenSSLKey(dict):
    """dkimpy's fields of a private key, and the same key as OpenSSL holds it."""

    openssl: rsa.RSAPrivateKey | None = None


@functools.lru_cache(maxsize=16)
def parse_pem_private_key(data: bytes) -> OpenSSLKey:
    key = OpenSSLKey(_PURE_PARSE(data))  # dkimpy's errors for what it cannot read
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return key
    if isinstance(private, rsa.RSAPrivateKey):
        key.openssl = private
    return key


def rsassa_pkcs1_v1_5_sign(digest, private_key) -> bytes:
    algorithm = _HASHES.get(getattr(digest, "name", ""))
    openssl = getattr(private_key, "openssl", None)
    if openssl is None or algorithm is None:
        return _PURE_SIGN(digest, private_key)
    return openssl.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm()))


def install() -> bool:
    """Have dkimpy sign RSA with OpenSSL; whether it now does."""
    if _PURE_PARSE is None or _PURE_SIGN is None:
        return False
    dkimpy.parse_pem_private_key = parse_pem_private_key
    dkimpy.RSASSA_PKCS1_v1_5_sign = rsassa_pkcs1_v1_5_sign
    return True
