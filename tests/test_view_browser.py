"""`hf-summary demo --view` in a real browser: headless Chromium (Debian's) finds the demo's scalar charts in
the TensorBoard that `view` serves, and the view command on the local Hub's repo page. Screenshots are saved
under the test's tmp dir (the paths are printed); with HF_SUMMARY_DOCS_SCREENSHOT=1 the one of TensorBoard also
replaces the documentation's (docs/images/demo-view.png, shown by docs/getting-started.md)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT, wait_until
from view_kit import STOP_S, ViewProcess, alive, tb_steps

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]
DEMO_TAGS = ("train/loss", "train/weight_norm")
DEMO_STEPS = 40  # per phase: the run's last step is 79
DOCS_SCREENSHOT = REPO_ROOT / "docs" / "images" / "demo-view.png"
RENDER_TIMEOUT_MS = 90_000

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright")
if not Path(CHROMIUM).is_file():
    pytest.skip("no Chromium installed (apt-get install -y chromium; .ci/run does this)", allow_module_level=True)


def test_demo_view_shows_the_scalar_charts_in_a_browser(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT", "HUGGING_FACE_HUB_TOKEN")}
    env["HF_HOME"] = str(tmp_path / "hf_home")
    with ViewProcess(["demo", "--steps", str(DEMO_STEPS), "--view"], env, tmp_path) as demo:
        tensorboard, _ = demo.tensorboard()
        repo_page = demo.line("Repo page: ").split(": ", 1)[1]
        children = psutil.Process(demo.process.pid).children(recursive=True)
        assert len(children) >= 2  # the local Hub and TensorBoard (with its data server)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{tensorboard}#timeseries")
                for tag in DEMO_TAGS:
                    card = page.locator(f'scalar-card:has(tb-truncated-path[title="{tag}"])')
                    card.locator("line-chart").first.wait_for(state="visible", timeout=RENDER_TIMEOUT_MS)
                    # the data table under the chart shows the run's last point, that of the second phase
                    last_step = str(2 * DEMO_STEPS - 1)
                    card.locator("scalar-card-data-table", has_text=last_step).wait_for(timeout=RENDER_TIMEOUT_MS)
                    box = card.locator("line-chart").first.bounding_box()
                    assert box and box["width"] > 100 and box["height"] > 100
                served = tb_steps(tensorboard)
                for tag in DEMO_TAGS:  # one clean series: every step once, the second phase after the first
                    assert served[("demo-run", tag)] == list(range(2 * DEMO_STEPS)), tag
                close_settings = page.get_by_label("Close side pane")  # more room for the charts
                close_settings.click()
                close_settings.wait_for(state="hidden", timeout=RENDER_TIMEOUT_MS)
                shot = tmp_path / "tensorboard.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of TensorBoard: {shot}")
                if os.environ.get("HF_SUMMARY_DOCS_SCREENSHOT") == "1":
                    DOCS_SCREENSHOT.write_bytes(shot.read_bytes())
                    print(f"screenshot of TensorBoard for the docs: {DOCS_SCREENSHOT}")

                page.goto(repo_page)
                command = page.locator("#view-command").inner_text()
                assert "hf-summary view demo/hf-summary-demo --path tensorboard" in command
                shot = tmp_path / "repo-page.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the repo page: {shot}")
            finally:
                browser.close()
        assert demo.interrupt() == 0
        assert demo.lines[-1] == "Stopped."
        wait_until(lambda: not any(alive(p) for p in children), STOP_S, message="the local Hub and TensorBoard stop")
