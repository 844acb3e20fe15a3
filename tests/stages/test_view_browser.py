"""The `view` page in a real headless Chromium: it loads without console errors, the filters change what is
shown, a click shows an analysis, and the HTML/JS payloads in the model text never run.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: chromium, chromium-driver) and selenium; the driver
path is given explicitly (Selenium Manager, which downloads drivers, cannot work offline). Skips with the
reason otherwise. The screenshot goes to a tmp path; `python scripts/view_screenshot.py` regenerates
docs/img/view.png (or set STEPWISER_VIEW_SCREENSHOT=PATH to have this test write it there too).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from test_view_fixtures import write_inputs

from stepwiser.stages.view import ViewConfig, run_view

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("view_screenshot", ROOT / "scripts" / "view_screenshot.py")
shot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shot)

pytestmark = pytest.mark.skipif(shot.missing() is not None, reason=f"no headless browser: {shot.missing()}")


@pytest.fixture(scope="module")
def browser():
    driver = shot.chrome_driver(1200, 900)
    yield driver
    driver.quit()


def _visible(driver) -> int:
    return sum(el.is_displayed() for el in driver.find_elements("css selector", ".solution"))


def _click(driver, element_id: str) -> None:
    driver.find_element("id", element_id).click()


def test_page_loads_filters_and_runs_no_payload(browser, tmp_path):
    inputs = write_inputs(tmp_path / "in", payload=True)
    page = tmp_path / "page.html"
    run_view(ViewConfig(inputs=[str(p) for p in inputs.values()], out=str(page), title="view test"))
    browser.get(page.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert not errors, errors
    assert browser.title == "view test"
    assert browser.execute_script("return window.pwned === undefined && !document.getElementById('injected')")
    assert browser.find_element("id", "shown").text == "8 of 8 solutions shown"   # the script ran
    assert _visible(browser) == 8

    _click(browser, "only-error")   # label type abs_q: p1/1 by its labels; the others by answer or label
    n_error = _visible(browser)
    assert 0 < n_error < 8 and browser.find_element("id", "shown").text == f"{n_error} of 8 solutions shown"
    _click(browser, "only-error")
    box = browser.find_element("id", "q")
    box.send_keys("bus carries")
    assert _visible(browser) == 2   # p2 in the annotations and in the labels run
    box.clear()
    box.send_keys(" ")               # fires input: the search is empty again
    assert _visible(browser) == 8

    chunk = browser.find_element("css selector", ".chunk.has-analysis")
    analysis = chunk.find_element("css selector", ".analysis")
    assert not analysis.is_displayed()
    chunk.click()
    assert analysis.is_displayed() and analysis.text
    struck = browser.find_elements("css selector", ".rejected s")
    assert struck and "6 * 5 = 35 pages." in struck[0].text
    assert browser.execute_script("return window.pwned === undefined && document.title === 'view test'")
    assert not [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]

    png = tmp_path / "view.png"
    browser.save_screenshot(str(png))
    assert png.stat().st_size > 1000
    target = os.environ.get("STEPWISER_VIEW_SCREENSHOT")
    if target:
        shot.screenshot(shot.build_page(tmp_path / "clean"), Path(target))


def test_disagreement_filter(browser, tmp_path):
    inputs = write_inputs(tmp_path / "in")
    page = tmp_path / "page.html"
    run_view(ViewConfig(inputs=[str(inputs["eval"]), str(inputs["labels"])], out=str(page)))
    browser.get(page.resolve().as_uri())
    assert _visible(browser) == 3
    _click(browser, "only-disagree")   # label type gold (the first): both eval items disagree
    assert _visible(browser) == 2
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "ltype")).select_by_value("rel_effective")
    assert _visible(browser) == 1     # the labels run's p2/0: judge Positive on a step labelled 0
    assert shutil.which("chromium") or Path(shot.CHROMIUM).is_file()
