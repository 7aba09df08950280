"""Plain-text training logs (issue 11): the styles in tests/fixtures/logs/text/, written by
hand from each logger's format string (mmcv's ``Epoch [e][i/n]\\tkey: value, ...``,
mmengine's ``Epoch(train)  [e][i/n]  key: value  ...``, DNANet's ``Epoch---e,
total_loss---v,``, CenterNet's ``epoch: e |name value |``, YOLOv5's console table), with the
values each reader must give written out here, not computed by the reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bad.helpers import run_cli

from convdiag.watch.discover import find_log, read_log

TEXT = Path(__file__).parent / "fixtures" / "logs" / "text"


def _series(path: Path) -> dict[str, list[tuple[float, float]]]:
    raw = read_log(path)
    return {
        k: list(zip(s.x.tolist(), s.values.tolist(), strict=True)) for k, s in raw.columns.items()
    }


def test_mmdet2_steps_count_iterations_and_val_sits_at_the_epoch_end() -> None:
    s = _series(TEXT / "mmdet2_retinanet.log")
    assert s["loss_cls"] == [(5.0, 1.1994), (10.0, 0.9371), (30.0, 0.5012)]  # 25 iters/epoch
    assert s["loss"][0] == (5.0, 1.4571) and s["lr"][0] == (5.0, 8.092e-05)
    assert s["val/bbox_mAP_50"] == [(25.0, 0.003)]
    assert "val/bbox_mAP_copypaste" not in s and "eta" not in s


def test_mmengine_epochs_and_a_gbk_header() -> None:
    raw = read_log(TEXT / "mmengine_gbk_header.log")
    assert any("not UTF-8" in n for n in raw.notes), raw.notes
    s = {k: list(zip(v.x.tolist(), v.values.tolist(), strict=True)) for k, v in raw.columns.items()}
    assert s["loss_kpt"] == [(1.0, 0.4219), (6.0, 0.39), (12.0, 0.35)]
    assert s["coco/bbox_mAP_50"] == [(6.0, 0.0), (12.0, 0.031)]


def test_mmengine_iterations_val_at_the_preceding_training_iteration() -> None:
    s = _series(TEXT / "mmengine_iter.log")
    assert [x for x, _ in s["loss_cls"]] == [500.0, 1000.0, 1500.0]
    assert s["coco/bbox_mAP"] == [(1000.0, 0.05)]  # not step 0 or 50


def test_dnanet_epochs_and_final_tuples() -> None:
    raw = read_log(TEXT / "dnanet_train.log")
    assert raw.x_name == "epoch"
    s = _series(TEXT / "dnanet_train.log")
    assert s["total_loss"] == [(1.0, 1.412001), (2.0, 1.203456), (3.0, 0.997293)]
    assert s["mIoU"] == [(3.0, 0.75)] and s["PD"] == [(3.0, 0.935)] and s["FA"] == [(3.0, 3.8e-05)]


def test_centernet_log_txt() -> None:
    s = _series(TEXT / "centernet_log.txt")
    assert s["hm_loss"] == [(1.0, 2.343), (2.0, 1.343)]
    assert s["off_loss"] == [(1.0, 0.236), (2.0, 0.226)]


def test_yolov5_console_last_progress_update_wins() -> None:
    s = _series(TEXT / "yolov5_console.log")
    assert s["train/box_loss"] == [(0.0, 0.105), (1.0, 0.095)]
    assert s["train/cls_loss"] == [(0.0, 0.0), (1.0, 0.0)]
    assert s["metrics/precision(B)"] == [(0.0, 0.0), (1.0, 0.212)]
    assert s["metrics/mAP50(B)"] == [(0.0, 0.0), (1.0, 0.101)]


def test_content_not_the_name_picks_the_reader(tmp_path: Path) -> None:
    odd = tmp_path / "train_output"  # no extension at all
    odd.write_bytes((TEXT / "centernet_log.txt").read_bytes())
    assert find_log(odd)[0] == "text"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "notes.txt").write_text("just some notes\n")
    (folder / "20230211_201558.log").write_bytes((TEXT / "mmdet2_retinanet.log").read_bytes())
    fmt, files, _ = find_log(folder)
    assert fmt == "text" and files[0].name == "20230211_201558.log"


@pytest.mark.parametrize("name", sorted(p.name for p in TEXT.iterdir()))
def test_every_text_fixture_goes_through_the_command(name: str) -> None:
    res = run_cli(["logs", TEXT / name, "--format", "json"])
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["source"]["format"].startswith("text-"), report["source"]


def test_a_text_file_in_no_known_style_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "train.log"
    p.write_text("hello\nworld\n")
    res = run_cli(["logs", p])
    assert res.code == 2 and "none of the styles" in res.stderr


def test_percentages_are_read_as_fractions_and_fa_is_named(tmp_path: Path) -> None:
    from convdiag.watch.mapping import map_columns

    p = tmp_path / "metrics.csv"
    p.write_text(
        "epoch,step,val/precision,val/recall,mIoU,FA\n0,10,12.5,40,55,3\n1,20,85,90,70,2\n"
    )
    m = map_columns(read_log(p))
    assert m.series["precision"].values.tolist() == [0.125, 0.85]
    assert m.series["recall"].values.tolist() == [0.4, 0.9]
    assert m.series["iou"].values.tolist() == [0.55, 0.7]
    assert any("read as percentages" in n for n in m.raw.notes)
    assert any("false-alarm pixels per image" in n for n in m.raw.notes)  # values >= 1
    fractions = tmp_path / "f" / "metrics.csv"
    fractions.parent.mkdir()
    fractions.write_text("epoch,step,val/precision,val/recall\n0,10,0.5,1.0\n")
    m = map_columns(read_log(fractions))
    assert m.series["recall"].values.tolist() == [1.0]  # exactly 1 is a fraction, not 1%
    assert not any("percentages" in n for n in m.raw.notes)


def test_a_fifo_in_a_run_folder_is_never_opened(tmp_path: Path) -> None:
    """A FIFO named like a log would block a content sniff forever: it is skipped in a
    folder and refused by name (run in a daemon thread, so a regression fails, not hangs)."""
    import os
    import threading

    from convdiag.errors import InputError
    from convdiag.watch.text_logs import read_text_log

    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "train.log")
    (run / "log.txt").write_bytes((TEXT / "centernet_log.txt").read_bytes())
    found: list[object] = []

    def look() -> None:
        found.append(find_log(run))
        try:
            read_text_log(run / "train.log")
        except InputError as e:
            found.append(str(e))

    t = threading.Thread(target=look, daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "a FIFO was opened"
    fmt, files, _ = found[0]  # type: ignore[misc]
    assert fmt == "text" and [f.name for f in files] == ["log.txt"]
    assert "not a regular file" in str(found[1])
