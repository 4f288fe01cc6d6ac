"""TLS on intake: STARTTLS with the site's certificate, re-read on SIGHUP.

`IntakeTls` holds the server-side `ssl.SSLContext` made from `[smtp]
tls_cert` and `tls_key` (paths relative to the site folder); each new
connection takes the context current when it opens, so `reload()` (on
SIGHUP) changes the certificate for the next clients without stopping the
server or any session under way. A certificate that cannot be loaded is a
ConfigError at start; at a reload it is logged and the old one stays.
Client certificates are not asked for (an MX takes mail from anyone), so a
client that offers one that does not verify is served like any other.

`starttls_rules(SMTP)` makes a protocol class that answers a second
STARTTLS with 503 (aiosmtpd would try to wrap the session again) and ends a
session whose handshake fails instead of answering on a broken channel.
Reads the certificate files; writes nothing.
"""

from __future__ import annotations

import logging
import ssl

from aiosmtpd.smtp import TLSSetupException

from listserv.errors import ConfigError

log = logging.getLogger(__name__)


class IntakeTls:
    """The intake's current TLS context (None when [smtp] tls_cert is empty)."""

    def __init__(self, site):
        smtp = site.settings.smtp
        self.source = site.settings.source
        self.cert = (site.folder / smtp.tls_cert) if smtp.tls_cert else None
        self.key = (site.folder / smtp.tls_key) if smtp.tls_key else self.cert
        self.context: ssl.SSLContext | None = self._load() if self.cert else None

    def _load(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_NONE  # no client certificates asked for
        try:
            context.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError, ValueError) as error:
            raise ConfigError(f"{self.source}: [smtp] tls_cert {self.cert} / tls_key "
                              f"{self.key} cannot be loaded: {error}") from None
        return context

    def reload(self) -> bool:
        """Read the certificate and key again; False (logged) when they do not load."""
        if self.cert is None:
            return False
        try:
            self.context = self._load()
        except ConfigError as error:
            log.error("TLS certificate not reloaded, the old one stays: %s", error)
            return False
        log.info("TLS certificate reloaded from %s", self.cert)
        return True


def starttls_rules(protocol_cls):
    """STARTTLS once per session, and a failed handshake ends the session."""

    class StartTlsOnce(protocol_cls):
        async def smtp_STARTTLS(self, arg):
            if self._tls_protocol is not None:
                await self.push("503 5.5.1 TLS is already active in this session")
                return
            try:
                await super().smtp_STARTTLS(arg)
            except TLSSetupException as error:
                peer = self.session.peer if self.session else "?"
                log.info("%r: TLS handshake failed: %s", peer, error.__cause__ or error)
                for transport in (self._original_transport, self.transport):
                    if transport is not None:
                        transport.close()

        def _timeout_cb(self):
            original = self._original_transport
            super()._timeout_cb()
            if original is not None and self.session is not None and self.session.ssl is None:
                original.close()  # a handshake that stopped half way

    StartTlsOnce.__name__ = f"StartTlsOnce{protocol_cls.__name__}"
    return StartTlsOnce
