"""`listserv serve` as a system service: the systemd unit it ships, the notify
socket, SIGHUP re-reading templates, the log file that survives logrotate,
syslog, and the fast event loop installed by default."""

from __future__ import annotations

import configparser
import importlib.metadata
import re
import signal
import socket
import time

import pytest
from helpers import listserv, make_site, running_server, send_mail, wait_until

from listserv.site.resources import shipped_dir

HELP = ("From: ana@example.org\nTo: peace-request@lists.example.org\nSubject: help\n"
        "Message-ID: <help-{n}@example.org>\n\nhelp\n")
POST = ("From: Ana <ana@example.org>\nTo: peace@lists.example.org\nSubject: Water {n}\n"
        "Message-ID: <water-{n}@example.org>\n\nClean water for every village.\n")


@pytest.fixture
def peace(tmp_path, sink):
    return forum_site(tmp_path, sink)


def forum_site(tmp_path, sink, **log: str):
    """A site delivering to the sink, with [log] keys set to the TOML values given."""
    folder = make_site(tmp_path, sink)
    config = folder / "listserv.toml"
    text = config.read_text()
    for key, value in log.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert found == 1, key
    config.write_text(text)
    listserv("forum", "create", "peace", "--title", "Peace workshop", "--path", "thematic",
             site=folder)
    for address in ("ana@example.org", "ben@example.net"):
        listserv("member", "add", "peace", address, "--preconfirmed", site=folder)
    return folder


def test_the_shipped_unit_is_a_notify_service_that_restarts_on_failure():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(shipped_dir("config") / "listserv.service")
    service = unit["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].endswith(" serve")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["UMask"] == "0077"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_serve_tells_systemd_it_is_ready_reloading_and_stopping(peace, tmp_path,
                                                               monkeypatch):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(30)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        with running_server(peace) as server:
            ready = listener.recv(4096).decode()
            assert ready.splitlines()[0] == "READY=1"
            assert f"STATUS=Serving lists.example.org on 127.0.0.1:{server.port}" in ready
            server.process.send_signal(signal.SIGHUP)
            reloading = listener.recv(4096).decode().splitlines()
            assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
            assert listener.recv(4096).decode().startswith("READY=1")
            assert server.process.poll() is None  # SIGHUP does not stop it
            server.process.send_signal(signal.SIGTERM)
            assert listener.recv(4096).decode() == "STOPPING=1"


def test_sighup_makes_serve_use_an_edited_template_at_once(peace, sink):
    with running_server(peace) as server:
        send_mail(server.port, "ana@example.org", ["peace-request@lists.example.org"],
                  HELP.format(n=1))
        (first,) = sink.wait_for_recipient("ana@example.org")
        time.sleep(6)  # past the check serve makes a few seconds after it starts
        folder = peace / "templates" / "en"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "help.txt").write_text("Subject: Help for {{ forum.slug }}\n\n"
                                         "Write to the secretariat.\n", encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "reloaded on SIGHUP: templates" in server.output(), 10,
                   "the reload")
        send_mail(server.port, "ana@example.org", ["peace-request@lists.example.org"],
                  HELP.format(n=2))
        answers = sink.wait_for_recipient("ana@example.org", 2, timeout=10)
    assert answers[1]["Subject"] == "Help for peace"
    assert first["Subject"] != "Help for peace"


def test_the_log_file_takes_one_line_per_event_and_survives_logrotate(tmp_path, sink):
    folder = forum_site(tmp_path, sink, file='"data/listserv.log"')
    log = folder / "data" / "listserv.log"
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST.format(n=1))
        sink.wait_for_recipient("ben@example.net")
        wait_until(lambda: log.exists() and "water-1" in log.read_text(), 10, "a log line")
        log.rename(log.with_name("listserv.log.1"))  # what logrotate does
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"], POST.format(n=2))
        sink.wait_for_recipient("ben@example.net", 2)
        wait_until(lambda: log.exists() and "water-2" in log.read_text(), 10,
                   "a line in the new file")
        log.rename(log.with_name("listserv.log.2"))
        server.process.send_signal(signal.SIGHUP)  # reopens as well
        wait_until(lambda: log.exists() and "reloaded on SIGHUP" in log.read_text(), 10,
                   "the reload line in a third file")
    old = log.with_name("listserv.log.1").read_text()
    assert "water-1" in old and "water-2" not in old
    for line in (old + log.with_name("listserv.log.2").read_text()).splitlines():
        assert " INFO " in line or " WARNING " in line or " ERROR " in line, line
    assert "INFO" not in server.output().replace("listserv: serving", "")  # not on stderr


def test_the_log_goes_to_syslog_when_asked(tmp_path, sink):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(20)
        port = collector.getsockname()[1]
        folder = forum_site(tmp_path, sink, syslog="true",
                            syslog_address=f'"127.0.0.1:{port}"', syslog_facility='"mail"')
        with running_server(folder) as server:
            send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                      POST.format(n=1))
            lines = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any("water-1" in x for x in lines):
                lines.append(collector.recv(8192).decode())
    (line,) = [x for x in lines if "water-1" in x]
    priority = int(line[1:line.index(">")])
    assert priority // 8 == 2  # facility mail
    assert f"listserv[{server.process.pid}]: INFO " in line
    assert "\n" not in line.rstrip("\x00\n")


def test_a_bad_log_setting_is_one_line_and_serve_does_not_start(peace):
    folder = peace
    config = folder / "listserv.toml"
    config.write_text(config.read_text().replace('level = "info"', 'level = "loud"'))
    result = listserv("serve", site=folder, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Error: {folder / 'listserv.toml'}: [log] level 'loud' "
                                     f"must be 'debug', 'info', 'warning' or 'error'")


def test_uvloop_is_installed_by_default_and_serve_runs_on_it(peace):
    requires = importlib.metadata.requires("listserv") or []
    (uvloop,) = [r for r in requires if r.startswith("uvloop") and "extra ==" not in r]
    assert "sys_platform" in uvloop
    with running_server(peace) as server:
        pass
    assert "; event loop uvloop" in server.output()
