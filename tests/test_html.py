"""The HTML report (issue 13) in a real browser: headless Chromium loads every command's
page (and a synthetic one) from ``file://`` in one run, a probe reports errors, images that
do not decode and evidence links that resolve to nothing, and screenshots at phone and
desktop widths must not be blank. Chromium is installed by the test command (.ci/run).
``CONVDIAG_DOCS_SCREENSHOT=docs/analyze.png pytest tests/test_html.py -k every`` redraws the
README's picture of the analyze page."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convdiag.report.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _report(tmp_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 0])
    fig.savefig(tmp_path / "P2_scores.png")
    plt.close(fig)
    report = {
        "schema": 1, "kind": "analyze", "verdict": "error: background collapse at P2",
        "checkpoint": "run/checkpoint.pt", "data": "data", "convdiag_version": "test",
        "findings": [{
            "id": "background-collapse", "severity": "error", "level": "P2",
            "evidence": {"f1_at_threshold": 0.0, "f1_min": 0.1, "auc": 0.6},
            "explanation": "At P2 the model predicts background everywhere <b>escaped</b>.",
            "remedies": [{"id": "focal-loss", "params": {"alpha": 2.0, "beta": 4.0},
                          "why": "w", "applied": True},
                         {"id": "spatial-attention", "params": {}, "why": "a",
                          "applied": False}],
        }],
        "metrics": {"P2": {"f1_at_0.5": 0.0, "auc": 0.6, "fp_per_image": 0.0}},
        "plots": {"P2": {"scores": "P2_scores.png", "missing": "gone.png"}},
    }  # fmt: skip
    (tmp_path / "report.json").write_text(json.dumps(report))
    return tmp_path / "report.json"


def test_page_content_without_a_browser(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    page = render_html(json.loads(rep.read_text()), tmp_path)
    assert page.index("Verdict: error: background collapse") < page.index("Findings")
    assert "&lt;b&gt;escaped&lt;/b&gt;" in page and "<b>escaped</b>" not in page
    assert "convdiag retrain run/checkpoint.pt --data data --remedy focal-loss:alpha=2.0," in page
    assert "advice: not applied by retrain" in page
    assert 'href="#evidence-background-collapse-P2"' in page
    assert 'id="evidence-background-collapse-P2"' in page
    assert 'href="#plot-P2-scores"' in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from a network
    assert "gone.png" not in page  # a plot file that is missing is left out, not linked


def _chromium(args: list[str]) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is not installed (the test command installs it)"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", *args],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


# Each page is loaded in a srcdoc iframe of one bundle page (same origin, so the bundle's
# script can look inside), so one browser run checks every page: a script injected first
# into each page records its errors (window.onerror, console.error); after load the bundle
# checks every image decoded and every #link has its target, per page.
CATCH = """<script>window.__errors=[];window.onerror=function(m){window.__errors.push(String(m))};
var __ce=console.error;console.error=function(){window.__errors.push(
Array.prototype.join.call(arguments,' '));__ce.apply(console,arguments)};</script>"""
BUNDLE_PROBE = """<script>
window.addEventListener('load', function () {
  var out = {};
  document.querySelectorAll('iframe').forEach(function (f) {
    var d = f.contentDocument, w = f.contentWindow, bad = [];
    d.querySelectorAll('img').forEach(function (im) {
      if (!im.complete || im.naturalWidth === 0) bad.push('img:' + im.alt);
    });
    d.querySelectorAll('a[href^="#"]').forEach(function (a) {
      if (!d.getElementById(a.getAttribute('href').slice(1))) bad.push('link:' + a.href);
    });
    out[f.id] = {bad: bad, errors: w.__errors || ['no probe'], images: d.images.length,
                 links: d.querySelectorAll('a[href^="#"]').length,
                 evidence: d.querySelectorAll('a[href^="#evidence-"]').length,
                 findings: d.querySelectorAll('div.card[id^="finding-"]').length,
                 overflow: d.documentElement.scrollWidth > w.innerWidth + 1};
  });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _bundle(pages: dict[str, str], width: int, height: int, probe: bool) -> str:
    frames = "".join(
        f'<iframe id="{name}" style="display:block;border:0;margin:0;width:{width}px;'
        f'height:{height}px" srcdoc="{html.escape(page.replace("<head>", "<head>" + CATCH, 1))}">'
        "</iframe>"
        for name, page in pages.items()
    )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><style>body{margin:0}</style>'
        f"</head><body>{frames}{BUNDLE_PROBE if probe else ''}</body></html>"
    )


def check_pages_in_chromium(
    pages: dict[str, str], folder: Path, shots: dict[str, Path] | None = None
) -> dict[str, Any]:
    """Load every page (name -> HTML) in headless Chromium: returns the probe per page
    (asserting no errors, broken images or dangling links), and takes a phone (390 px) and
    a desktop (1280 px) screenshot of each page that must not be blank; ``shots``: save the
    desktop screenshot of a page there (name -> path)."""
    probed = folder / "bundle-probe.html"
    probed.write_text(_bundle(pages, 1280, 900, True), encoding="utf-8")
    res = _chromium(["--virtual-time-budget=10000", "--dump-dom", probed.as_uri()])
    assert res.returncode == 0, res.stderr[-2000:]
    start = res.stdout.index('<pre id="probe">') + len('<pre id="probe">')
    probe = json.loads(html.unescape(res.stdout[start : res.stdout.index("</pre>", start)]))
    assert set(probe) == set(pages), probe
    for name, p in probe.items():
        assert p["bad"] == [] and p["errors"] == [], (name, p)
    for width, height in ((390, 844), (1280, 900)):
        page = folder / f"bundle-{width}.html"
        page.write_text(_bundle(pages, width, height, False), encoding="utf-8")
        shot = folder / f"bundle-{width}.png"
        res = _chromium([f"--window-size={width},{height * len(pages)}",
                         f"--screenshot={shot}", "--virtual-time-budget=10000",
                         page.as_uri()])  # fmt: skip
        assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
        with Image.open(shot) as im:
            full = im.convert("RGB")
        assert full.size == (width, height * len(pages))
        for i, name in enumerate(pages):
            part = full.crop((0, i * height, width, (i + 1) * height))
            pixels = np.asarray(part.convert("L"), dtype=np.float64)
            assert pixels.std() > 10 and (pixels < 128).mean() > 0.01, (name, width)
            if shots and name in shots and width == 1280:
                part.save(shots[name])
    return dict(probe)


@pytest.mark.slow
def test_every_command_writes_a_page_that_renders(
    tiny_dataset: Path, trained_checkpoint: Any, tmp_path: Path, tmp_path_factory: Any
) -> None:
    from bad.helpers import run_cli
    from test_npz_plots import command_outputs

    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    outs = command_outputs(tmp_path_factory, tiny_dataset, ckpt)
    folders = {n: outs[n] for n in ("labels", "analyze", "retrain", "logs", "check", "sweep")}
    if "demo" in outs:
        folders |= {"demo": outs["demo"], "demo-analysis": outs["demo"] / "analysis"}
    pages = {}
    for name, folder in folders.items():
        page = folder / "report.html"
        assert page.is_file(), name
        pages[name] = page.read_text(encoding="utf-8")
        shown = run_cli(["show", folder, "--format", "html"])  # the same page from the data
        assert shown.code in (0, 1) and shown.stdout == pages[name], name
    synthetic = _report(tmp_path)
    pages["synthetic"] = render_html(json.loads(synthetic.read_text()), tmp_path)
    shot = tmp_path / "analyze.png"
    probe = check_pages_in_chromium(pages, tmp_path, {"analyze": shot})
    for name, p in probe.items():
        if name != "check":  # check writes no plots; every other command's page shows them
            assert p["images"] >= 1, (name, p)
        if p["findings"]:
            assert p["evidence"] >= p["findings"], (name, p)  # each finding links its evidence
    assert probe["synthetic"]["images"] == 1 and probe["synthetic"]["links"] >= 2
    assert not probe["analyze"]["overflow"]  # the desktop page needs no sideways scrolling
    docs = os.environ.get("CONVDIAG_DOCS_SCREENSHOT")
    if docs:  # CONVDIAG_DOCS_SCREENSHOT=docs/analyze.png regenerates the README's picture
        with Image.open(shot) as im:
            im.convert("RGB").quantize(colors=64).save(docs, optimize=True)
