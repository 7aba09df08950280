"""The log corpus of issue 11: one file of every format and case, each with the verdict a
reader of that log would give it, judged through the one diagnosis core.

The files are written by ``tests/fixtures/logs/make_corpus.py`` (corpus/) and by hand
(text/) from each logger's documented format; the expectations below are written out
here, not computed by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bad.helpers import run_cli

from convdiag.watch.analysis import analyze_log

LOGS = Path(__file__).parent / "fixtures" / "logs"
C, T = LOGS / "corpus", LOGS / "text"

# path -> (first finding id, ids that must be present, ids that must be absent, framework)
CASES: dict[Path, tuple[str, set[str], set[str], str | None]] = {
    C / "yolov8_collapse": ("background-collapse", set(), {"healthy"}, "ultralytics"),
    C / "yolov8_healthy": ("healthy", set(), {"too-short"}, "ultralytics"),
    C / "yolov8_one_epoch": ("too-short", set(), {"healthy", "background-collapse"}, "ultralytics"),
    C / "yolov5_noval": ("validation-off", {"too-short"}, {"background-collapse"}, "yolov5"),
    C / "yolov5_noval_tb": ("validation-off", {"too-short"}, {"background-collapse"}, "yolov5"),
    C / "yolov5_single_class": ("healthy", {"single-class-cls-loss"}, {"loss-plateau"}, "yolov5"),
    C / "acm_irstd_tb": ("healthy", set(), set(), "irstd"),
    C / "tb_two_runs": ("healthy", set(), {"background-collapse"}, None),
    C / "mmengine_seven_runs": ("too-short", set(), {"healthy"}, "mmdetection"),
    C / "mmengine_iter_val_step0": ("background-collapse", set(), set(), "mmdetection"),
    C / "mmdet2_json": ("healthy", set(), set(), "mmdetection"),
    C / "lightning_percent": ("healthy", set(), set(), None),
    C / "centernet_log.txt": ("regression-collapse", set(), {"healthy"}, "centernet"),
    T / "mmdet2_retinanet.log": ("too-short", set(), {"healthy"}, "mmdetection"),
    T / "mmengine_gbk_header.log": ("too-short", set(), {"healthy"}, "mmdetection"),
    T / "mmengine_iter.log": ("too-short", set(), {"healthy"}, "mmdetection"),
    T / "dnanet_train.log": ("too-short", set(), {"healthy"}, "irstd"),
    T / "centernet_log.txt": ("too-short", set(), {"healthy"}, "centernet"),
    T / "yolov5_console.log": ("too-short", {"single-class-cls-loss"}, {"healthy"}, "yolov5"),
}


def _ids(report: dict[str, Any]) -> list[str]:
    return [f["id"] for f in report["findings"]]


@pytest.mark.parametrize("path", list(CASES), ids=[p.name for p in CASES])
def test_every_corpus_log_gets_its_verdict(path: Path) -> None:
    first, present, absent, framework = CASES[path]
    report = analyze_log(path)
    ids = _ids(report)
    assert ids[0] == first, (ids, report["verdict"])
    assert present <= set(ids) and not absent & set(ids), ids
    assert report["source"]["framework"] == framework


def test_the_results_csv_and_the_event_files_of_one_noval_run_agree() -> None:
    csv, tb = analyze_log(C / "yolov5_noval"), analyze_log(C / "yolov5_noval_tb")
    assert _ids(csv) == _ids(tb) == ["validation-off", "too-short"]
    off = csv["findings"][0]["evidence"]
    assert off["validated_at"] == 29 and off["zero_points"] == 29


def test_too_short_says_what_was_there_and_what_the_rules_need() -> None:
    f = analyze_log(C / "yolov8_one_epoch")["findings"][0]
    assert f["evidence"]["points"] == 1 and f["evidence"]["min_points"] == 3
    assert "metrics/mAP50(B) 0" in f["explanation"] or "0" in f["explanation"]


def test_single_class_cls_loss_falls_back_to_objectness() -> None:
    r = analyze_log(C / "yolov5_single_class")
    f = next(f for f in r["findings"] if f["id"] == "single-class-cls-loss")
    assert "train/obj_loss" in f["explanation"] and f["evidence"]["points"] == 30


def test_iteration_validation_at_step_0_starts_at_the_preceding_iteration() -> None:
    r = analyze_log(C / "mmengine_iter_val_step0")
    f = r["findings"][0]
    assert f["evidence"]["started_at"] == 500  # the first evaluation, after iteration 500
    assert r["metrics"]["map"]["first_at"] == 500 and r["metrics"]["map"]["last_at"] == 2000


def test_runs_in_one_file_and_in_one_folder_are_split() -> None:
    seven = analyze_log(C / "mmengine_seven_runs")
    assert (seven["source"]["runs"], seven["source"]["run"]) == (7, 7)
    two = analyze_log(C / "tb_two_runs")
    assert (two["source"]["runs"], two["source"]["run"]) == (2, 2)
    assert len(two["source"]["files"]) == 1 and "2222" in two["source"]["files"][0]
    first = analyze_log(C / "tb_two_runs", run=1)
    assert _ids(first)[0] == "background-collapse" and "1111" in first["source"]["files"][0]


def test_percentages_and_infrared_metrics_are_read_without_map() -> None:
    r = analyze_log(C / "lightning_percent")
    assert r["metrics"]["iou"]["column"] == "val/mIoU" and r["metrics"]["iou"]["max"] <= 1.0
    assert any("read as percentages" in n for n in r["source"]["notes"])
    acm = analyze_log(C / "acm_irstd_tb")
    assert acm["metrics"]["iou"]["column"] == "Eval/IoU"
    assert acm["metrics"]["niou"]["column"] == "Eval/nIoU"


def test_the_offset_reference_only_with_an_offset_loss() -> None:
    assert analyze_log(C / "yolov8_collapse")["reference"]["reg_constant"] is None
    assert analyze_log(C / "centernet_log.txt")["reference"]["reg_constant"] == 0.25
    res = run_cli(["logs", C / "yolov8_collapse"])
    assert "offset loss" not in res.stdout


def test_remedies_name_the_framework_setting() -> None:
    col = analyze_log(C / "yolov5_noval", run=None)  # no collapse claimed: no remedies
    assert all(not f["remedies"] for f in col["findings"])
    r = analyze_log(C / "yolov8_collapse")
    whys = {m["id"]: m["why"] for m in r["findings"][0]["remedies"]}
    assert "v8DetectionLoss" in whys["focal-loss"]
    assert "assumes a heatmap detector" in whys["soft-labels"]


def test_logs_a_b_compares_two_runs_side_by_side(tmp_path: Path) -> None:
    a, b = C / "yolov8_collapse", C / "yolov8_healthy"
    res = run_cli(["logs", a, b, "--format", "json", "--fail-on", "error"])
    assert res.code == 1, res.stderr  # the collapsed run fails --fail-on error
    rep = json.loads(res.stdout)
    assert rep["kind"] == "logs-compare" and len(rep["run_reports"]) == 2
    assert rep["fired"]["background-collapse"] == [True, False]
    assert rep["symptoms"]["background-collapse"] == [1.0, None]
    assert rep["finals"]["map"][1] > 0.5 > rep["finals"]["map"][0]
    table = run_cli(["logs", a, b, "--out", tmp_path / "cmp"])
    text = " ".join(table.stdout.split())
    assert "runs compared" in text and "from epoch 1" in text
    for name in (
        "report.json",
        "report.md",
        "report.html",
        "run1/report.json",
        "run2/timeline.png",
    ):
        assert (tmp_path / "cmp" / name).is_file(), name


@pytest.mark.parametrize("name", ["metrics.csv", "scalars.json", "train.log"])
def test_the_streaming_readers_report_their_position(tmp_path: Path, name: str) -> None:
    from convdiag.watch.progress import EVERY, reporting

    p = tmp_path / name
    n = 3 * EVERY + 5
    if name.endswith(".csv"):
        text = "step,train/loss\n" + "".join(f"{i},{1 / (i + 1):.5f}\n" for i in range(n))
    elif name.endswith(".json"):
        text = "".join(json.dumps({"lr": 0.1, "loss": 1 / (i + 1), "step": i}) + "\n"
                       for i in range(n))  # fmt: skip
    else:
        text = "".join(f"2025-12-02-20-20: epoch: {i} |loss {1 / (i + 1):.4f} | hm_loss 0.5 |\n"
                       for i in range(n))  # fmt: skip
    p.write_text(text)
    seen: list[int] = []
    with reporting(seen.append):
        analyze_log(p)
    assert len(seen) >= 3 and seen == sorted(seen) and 0 < seen[-1] <= p.stat().st_size
    k = len(seen)
    analyze_log(p)  # outside the block nothing is reported
    assert len(seen) == k
