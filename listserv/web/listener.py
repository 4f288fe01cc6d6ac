"""RFC 8058 one-click unsubscribe over HTTP, the archive's pages, and `/metrics`.

`POST /unsubscribe/TOKEN` with `List-Unsubscribe=One-Click` removes the
member named by the signed token at once (mail providers send it when a
reader presses "unsubscribe"); `GET` only shows a page with a button, since
link scanners fetch every URL in a message and must not unsubscribe anyone.
Runs on a thread of its own (the standard library's HTTP server), started by
`serve` when `[web] url` is set or `[web] metrics` is true; writes through
the store's writer. Put an HTTPS reverse proxy in front of it: RFC 8058
requires an HTTPS address. `GET /archive/...` serves the static archive
folder and its search form (see listserv/archive/serving.py). With `[web]
metrics`, `GET /metrics` answers the site's figures (listserv/web/metrics.py);
keep it off the public proxy.
"""

from __future__ import annotations

import html
import logging
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from listserv.errors import ListservError

log = logging.getLogger(__name__)

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1><p>{text}</p>{form}</body></html>"""


def make_handler(site):
    from listserv.intake.leaving import one_click_unsubscribe

    metrics = None
    if site.settings.web.metrics:
        from listserv.web.metrics import CONTENT_TYPE, registry_for, render_metrics
        metrics = registry_for(site)

    class Handler(BaseHTTPRequestHandler):
        server_version = "listserv"

        def log_message(self, fmt, *args):  # our log, not stderr
            log.info("web %s %s", self.address_string(), fmt % args)

        def _token(self) -> str | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            return parts[1] if len(parts) == 2 and parts[0] == "unsubscribe" else None

        def _page(self, status: int, title: str, text: str, form: str = "") -> None:
            body = PAGE.format(title=html.escape(title), text=html.escape(text),
                               form=form).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _metrics(self) -> None:
            try:
                body = render_metrics(metrics)
            except Exception as error:  # the database busy or unreadable: say so, once
                log.error("metrics failed: %s: %s", type(error).__name__, error)
                return self._page(503, "Please try again", "The figures cannot be read now.")
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _archive(self, path: str, query: str) -> None:
            from listserv.archive.serving import respond

            try:
                answer = respond(site, path, query)
            except Exception:
                log.exception("archive page %s failed", path[:200])
                return self._page(503, "Please try again", "The page could not be read now.")
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            for name, value in answer.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer.body)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if metrics is not None and path == "/metrics":
                return self._metrics()
            if path == "/archive" or path.startswith("/archive/"):
                return self._archive(path[len("/archive/"):], query)
            token = self._token()
            if token is None:
                return self._page(404, "Not found", "There is nothing here.")
            form = (f'<form method="post" action="/unsubscribe/{html.escape(token)}">'
                    '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                    '<button type="submit">Unsubscribe</button></form>')
            self._page(200, "Unsubscribe", "Press the button to leave the forum.", form)

        def do_POST(self):
            token = self._token()
            length = min(int(self.headers.get("Content-Length") or 0), 4096)
            self.rfile.read(length)
            if token is None:
                return self._page(404, "Not found", "There is nothing here.")
            try:
                text = site.write_now(one_click_unsubscribe, site, token,
                                      datetime.now(timezone.utc))
            except ListservError as error:
                return self._page(400, "Not unsubscribed", str(error))
            except Exception:
                log.exception("one-click unsubscribe failed")
                return self._page(503, "Please try again", "The server could not do this "
                                  "now; please try again later or unsubscribe by email.")
            self._page(200, "Unsubscribed", str(text or "You have left the forum."))

    return Handler


def start_web(site, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(site))
    threading.Thread(target=server.serve_forever, name="listserv-web", daemon=True).start()
    return server
