"""Certificates for TLS tests, made with the openssl command line: a test CA
and a server certificate it signs for a host name and 127.0.0.1, so a client
can verify both the chain and the name. Valid from now for a few days."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="the openssl command is not installed")


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA certificate a client trusts
    cert: Path  # the server certificate (leaf)
    key: Path  # its key


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str = "Test CA") -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj",
             f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    return folder / "ca.pem", folder / "ca.key"


def make_certs(folder: Path, host: str = "lists.example.org", stem: str = "server",
               ca: tuple[Path, Path] | None = None) -> Certs:
    """A server certificate for `host` (and IP 127.0.0.1) signed by a test CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, ca_key = ca or make_ca(folder)
    (folder / f"{stem}.ext").write_text(f"subjectAltName=DNS:{host},IP:127.0.0.1\n"
                                        f"extendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={host}",
             cwd=folder)
    _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", str(ca_pem), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", f"{stem}.pem", "-days", "3",
             "-extfile", f"{stem}.ext", cwd=folder)
    return Certs(ca_pem, folder / f"{stem}.pem", folder / f"{stem}.key")
