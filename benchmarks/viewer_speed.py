"""How fast the memory viewer's page opens and follows its slider, in a real browser.

Run: ``python benchmarks/viewer_speed.py`` (every shipped model's page; needs Playwright and
a system chromium: ``pip install playwright``, ``apt-get install chromium``). For each page,
written by ``ntm viz --pretrained T [--model dnc] --html``: the seconds from opening the file
to a drawn page, the seconds to switch to its longest sequence, and the milliseconds the
page takes to redraw for a slider position (measured inside the page, at five steps).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ntm.pictures.viewer import draw_page
from ntm.runs import pretrained

STEPS = (0.05, 0.4, 0.8, 1.0, 0.2)  # slider positions, as shares of the sequence


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 (optional)
    except ImportError:
        parser.error("needs playwright: pip install playwright")
    folder = Path(tempfile.mkdtemp(prefix="ntm-viewer-"))
    pages = []
    for model in pretrained.models():
        for task in pretrained.available(model):
            pages.append(
                (
                    f"{task}, {model}",
                    draw_page(pretrained.path(task, model), folder / f"{task}-{model}"),
                )
            )
    print(f"{'page':<26} {'MB':>5} {'open s':>7} {'longest s':>10}  slider ms")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
        for name, path in pages:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            start = time.perf_counter()
            page.goto(path.as_uri())
            page.wait_for_selector("#memory")
            opened = time.perf_counter() - start
            last = page.locator("#sequence option").count() - 1
            start = time.perf_counter()
            page.select_option("#sequence", str(last))
            page.inner_text("#step")
            switched = time.perf_counter() - start
            redraws = page.evaluate(
                """(shares) => shares.map((share) => {
                    const s = window.viewer.state.sequence, begin = performance.now();
                    window.viewer.setStep(Math.round(share * (s.T - 1)));
                    return performance.now() - begin; })""",
                list(STEPS),
            )
            size = path.stat().st_size / 1e6
            slider = ", ".join(f"{ms:.1f}" for ms in redraws)
            print(f"{name:<26} {size:>5.2f} {opened:>7.2f} {switched:>10.2f}  {slider}", flush=True)
            page.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
