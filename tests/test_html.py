"""The HTML report (issue 13) in a real browser: headless Chromium loads the page from
``file://``, a probe script appended to a copy of the page reports console errors, images
that do not decode and evidence links that resolve to nothing, and screenshots at phone and
desktop widths must not be blank. Chromium is installed by the test command (.ci/run)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from convdiag.report.html import render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
window.addEventListener('load', function () {
  var bad = [];
  document.querySelectorAll('img').forEach(function (im) {
    if (!im.complete || im.naturalWidth === 0) bad.push('img:' + im.alt);
  });
  document.querySelectorAll('a[href^="#"]').forEach(function (a) {
    if (!document.getElementById(a.getAttribute('href').slice(1))) bad.push('link:' + a.href);
  });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({bad: bad, images: document.images.length,
    links: document.querySelectorAll('a[href^="#"]').length});
  document.body.appendChild(out);
});
window.onerror = function (m) { document.title = 'JSERROR ' + m; };
</script>"""


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
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_page_in_headless_chromium(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    page = render_html(json.loads(rep.read_text()), tmp_path)
    (tmp_path / "report.html").write_text(page)
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    res = _chromium(["--virtual-time-budget=5000", "--dump-dom", probed.as_uri()])
    assert res.returncode == 0, res.stderr[-2000:]
    title = res.stdout[res.stdout.index("<title>") + 7 : res.stdout.index("</title>")]
    assert not title.startswith("JSERROR"), title  # the page's own script raised nothing
    assert "CONSOLE" not in res.stderr or "Uncaught" not in res.stderr, res.stderr[-2000:]
    start = res.stdout.index('<pre id="probe">') + len('<pre id="probe">')
    probe = json.loads(res.stdout[start : res.stdout.index("</pre>", start)])
    assert probe["bad"] == [] and probe["images"] == 1 and probe["links"] >= 2, probe
    for width, height in ((390, 844), (1280, 900)):
        shot = tmp_path / f"shot_{width}.png"
        res = _chromium([f"--window-size={width},{height}", f"--screenshot={shot}",
                         (tmp_path / "report.html").as_uri()])  # fmt: skip
        assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
        assert pixels.shape == (height, width)
        assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and a verdict bar


def _probe_page(page: Path) -> dict:
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    res = _chromium(["--virtual-time-budget=5000", "--dump-dom", probed.as_uri()])
    probed.unlink()
    assert res.returncode == 0, res.stderr[-2000:]
    title = res.stdout[res.stdout.index("<title>") + 7 : res.stdout.index("</title>")]
    assert not title.startswith("JSERROR"), title
    start = res.stdout.index('<pre id="probe">') + len('<pre id="probe">')
    return json.loads(res.stdout[start : res.stdout.index("</pre>", start)])


@pytest.mark.slow
def test_every_command_writes_a_page_that_renders(
    tiny_dataset: Path, trained_checkpoint: Any, tmp_path: Path
) -> None:
    from bad.helpers import run_cli

    ckpt = trained_checkpoint(head="P2", labels="hard", loss="bce", bias_init="zero")
    history = tmp_path / "retrain" / "history.csv"  # written by the retrain run first
    runs = {
        "labels": ["labels", tiny_dataset, "--levels", "P2,P4"],
        "analyze": ["analyze", ckpt, "--data", tiny_dataset],
        "retrain": ["retrain", ckpt, "--data", tiny_dataset, "--focal", "--steps", "4"],
        "logs": ["logs", history],
        "check": ["check", ckpt, "--data", tiny_dataset, "--max-images", "8"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        res = run_cli([*args, "--out", out, "--format", "json"])
        assert res.code in (0, 1), (name, res.stderr[-2000:])
        page = out / "report.html"
        assert page.is_file(), name
        probe = _probe_page(page)
        assert probe["bad"] == [], (name, probe)
        if name != "check":  # check writes no plots; every other command's page shows them
            assert probe["images"] >= 1, (name, probe)
    shown = run_cli(["show", tmp_path / "analyze" / "report.json", "--format", "html"])
    assert (
        shown.code in (0, 1) and shown.stdout == (tmp_path / "analyze" / "report.html").read_text()
    )
