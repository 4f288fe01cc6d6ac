"""The archive as a reader sees it: in headless Chromium, served by `listserv serve`.

A hostile post's page runs no script (no dialog, no console error from a
script the browser refused), the month, post and thread pages link to one
another when clicked, and a post page and the directory page are kept as
screenshots for the test report.
"""

from __future__ import annotations

import shutil

import pytest

from archivekit import archived, forum, mail, post_ids, web_site
from helpers import query, running_server, send_mail
from test_hostile_pages import CORPUS, GMAIL_HTML, gmail

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.skipif(shutil.which("chromium") is None,
                       reason="Chromium is not installed (apt-get install chromium "
                              "chromium-driver)"),
    pytest.mark.skipif(shutil.which("chromedriver") is None,
                       reason="chromedriver is not installed (apt-get install chromium-driver)"),
]

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1000,900",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.unhandled_prompt_behavior = "ignore"  # an alert stays open for us to find
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def open_dialog(driver) -> str | None:
    """The text of an alert, confirm or prompt the page opened, if any."""
    try:
        return driver.switch_to.alert.text
    except NoAlertPresentException:
        return None


def script_errors(driver) -> list[str]:
    """Console messages of scripts that ran or that the page's policy refused."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] in ("SEVERE", "WARNING")
            and any(word in entry["message"].lower()
                    for word in ("script", "content security policy", "uncaught", "alert"))]


def test_a_hostile_post_runs_no_script_in_chromium(tmp_path, sink, browser, record_property):
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  (CORPUS / "html-only-hostile.eml").read_bytes())
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  gmail("Semillas para todos", "Seeds for all.", GMAIL_HTML,
                        "<g1@mail.gmail.com>"))
        archived(folder, 2)
        pages = [f"http://127.0.0.1:{web}/archive/peace/{post_id}.html"
                 for post_id in post_ids(folder)]
        seen = []
        for url in pages:
            browser.get(url)
            seen.append((browser.title, open_dialog(browser), script_errors(browser),
                         browser.execute_script("return document.scripts.length"),
                         browser.current_url))
        shot = tmp_path / "post-page.png"
        browser.get(pages[0])
        assert browser.save_screenshot(str(shot))
    record_property("screenshot_post_page", str(shot))
    print(f"screenshot of a hostile post's page: {shot}")
    (festival, seeds) = seen
    for title, dialog, errors, scripts, url in seen:
        assert dialog is None, (title, dialog)
        assert errors == [], (title, errors)
        assert scripts == 0, title
        assert url in pages  # no meta refresh, no script moved the page elsewhere
    assert festival[0].startswith("Harvest festival") and seeds[0].startswith("Semillas")
    assert shot.stat().st_size > 5000


def test_month_post_and_thread_pages_link_to_one_another_when_clicked(tmp_path, sink, browser,
                                                                      record_property):
    folder, web = web_site(tmp_path, sink)
    forum(folder)
    with running_server(folder) as server:
        send_mail(server.port, "ana@example.org", ["peace@lists.example.org"],
                  mail("Water points", "Where are the wells?", message_id="<w1@example.org>"))
        send_mail(server.port, "ben@example.net", ["peace@lists.example.org"],
                  mail("Re: Water points", "Two by the school.", sender="Ben <ben@example.net>",
                       message_id="<w2@example.org>",
                       headers="In-Reply-To: <w1@example.org>\nReferences: <w1@example.org>\n"))
        archived(folder, 2)
        first, reply = post_ids(folder)
        ((month,),) = query(folder, "SELECT DISTINCT month FROM archive_posts")
        base = f"http://127.0.0.1:{web}/archive/peace/"
        browser.get(f"{base}{month}.html")
        month_title = browser.find_element(By.TAG_NAME, "h1").text
        browser.find_element(By.LINK_TEXT, "Re: Water points").click()
        at_post = (browser.current_url, browser.find_element(By.TAG_NAME, "h1").text,
                   browser.find_element(By.CSS_SELECTOR, "pre.text").text)
        browser.find_element(By.LINK_TEXT, "Water points").click()  # its parent
        at_parent = browser.current_url
        browser.back()
        browser.find_element(By.CSS_SELECTOR, f'p.meta a[href="t{first}.html"]').click()
        at_thread = (browser.current_url,
                     [a.text for a in browser.find_elements(By.CSS_SELECTOR, "article h2 a")])
        browser.back()
        back_at = browser.current_url
        browser.find_element(By.LINK_TEXT, month).click()
        again_month = browser.current_url
        directory = tmp_path / "directory-page.png"
        browser.get(f"http://127.0.0.1:{web}/archive/directory-en.html")
        directory_text = browser.find_element(By.TAG_NAME, "body").text
        assert browser.save_screenshot(str(directory))
        dialog, errors = open_dialog(browser), script_errors(browser)
    record_property("screenshot_directory_page", str(directory))
    print(f"screenshot of the directory page: {directory}")
    assert "Peace workshop" in month_title
    assert at_post == (f"{base}{reply}.html", "Re: Water points", "Two by the school.")
    assert at_parent == f"{base}{first}.html"
    assert at_thread == (f"{base}t{first}.html", ["Water points", "Re: Water points"])
    assert back_at == f"{base}{reply}.html"
    assert again_month == f"{base}{month}.html"
    assert "Peace workshop" in directory_text and "peace-join@" in directory_text
    assert (dialog, errors) == (None, [])
    assert directory.stat().st_size > 5000
