"""Regenerate docs/img/view.png: the `stepwiser view` page of the tests' tiny outputs, in headless Chromium.

    python scripts/view_screenshot.py [OUT.png]      (default: docs/img/view.png)

Needs the Debian packages `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver) and
`pip install selenium`; the driver is given explicitly, Selenium Manager (which downloads drivers) is never
used. `chrome_driver` and `screenshot` are also used by tests/stages/test_view_browser.py.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why the browser cannot run here (None when it can)."""
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file() and not shutil.which(Path(path).name):
            return f"{path} not found (apt-get install {pkg})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def chrome_driver(width: int = 1200, height: int = 900):
    """Headless Chromium with the system chromedriver and the browser console log enabled."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = CHROMEDRIVER if Path(CHROMEDRIVER).is_file() else shutil.which("chromedriver")
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def screenshot(page: Path, out: Path, width: int = 1200, height: int = 1400, open_analysis: bool = True) -> Path:
    """A PNG of the top of `page` (the plots, the filters and the first solutions; the first chunk with an
    analysis clicked open)."""
    driver = chrome_driver(width, height)
    try:
        driver.get(page.resolve().as_uri())
        chunks = driver.find_elements("css selector", ".chunk.has-analysis")
        if open_analysis and chunks:
            chunks[0].click()
        out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(out))
    finally:
        driver.quit()
    shrink(out)
    return out


def shrink(png: Path, colours: int = 128) -> None:
    """Re-save `png` with a palette of `colours` (a page of flat colours: about a third of the size)."""
    try:
        from PIL import Image
    except ImportError:   # pillow comes with matplotlib; without it the PNG stays as the browser wrote it
        return
    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    small.save(png, optimize=True)


def build_page(folder: Path) -> Path:
    """The page of the tests' tiny outputs (no payloads), written into `folder` (the outputs under
    `folder`/runs/micro, named by relative paths as a user would)."""
    sys.path.insert(0, str(ROOT / "tests" / "stages"))
    from test_view_fixtures import write_inputs

    from stepwiser.stages.view import ViewConfig, run_view

    folder = folder.resolve()
    inputs = write_inputs(folder / "runs" / "micro")
    order = ("search", "eval", "annotate", "labels")   # rejected attempts and analyses first
    page = folder / "view.html"
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        run_view(ViewConfig(inputs=[str(inputs[k].relative_to(folder)) for k in order], out=str(page),
                            title="StepWiser view: runs/micro"))
    finally:
        os.chdir(cwd)
    return page


def main(argv: list[str]) -> int:
    why = missing()
    if why:
        print(f"cannot take the screenshot: {why}", file=sys.stderr)
        return 1
    out = Path(argv[0]) if argv else ROOT / "docs" / "img" / "view.png"
    with tempfile.TemporaryDirectory() as tmp:
        screenshot(build_page(Path(tmp)), out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
