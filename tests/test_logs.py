"""``convdiag logs``: readers per format, column mapping, symptoms over time, CLI and report.

Log files are written by the tests in each format with realistic shapes (Lightning's sparse
rows, ultralytics' padded headers, mmengine's mixed train/val lines, a real TensorBoard
file written by torch's SummaryWriter) and read back against independent parses (csv/json
modules, pandas, TensorBoard's own reader when installed).
"""

from __future__ import annotations

import importlib.util
import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from convdiag.cli.main import cli
from convdiag.errors import InputError
from convdiag.watch import (
    Reference,
    Thresholds,
    analyze_log,
    build_reference,
    constant_from_prior,
    find_symptoms,
    map_columns,
    parse_map,
    read_log,
)
from convdiag.watch.table import RawLog, Series
from convdiag.watch.tensorboard import masked_crc32c, parse_event, read_records

FIXTURES = Path(__file__).parent / "fixtures" / "logs"


# --------------------------------------------------------------------------- writers


def write_csv(path: Path, header: list[str], rows: list[list[Any]], pad: int = 0) -> Path:
    """A CSV log; ``pad`` right-justifies every cell to that width (ultralytics style)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def cell(v: Any) -> str:
        s = "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
        return s.rjust(pad) if pad else s

    lines = [",".join(cell(h) for h in header)]
    lines += [",".join(cell(v) for v in r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def never_converged_results(path: Path, epochs: int = 15) -> Path:
    """ultralytics results.csv: losses fall for 15 epochs while P/R/mAP stay exactly 0."""
    header = ["epoch", "train/box_loss", "train/cls_loss", "train/dfl_loss",
              "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)",
              "metrics/mAP50-95(B)", "val/box_loss", "val/cls_loss", "val/dfl_loss",
              "lr/pg0"]  # fmt: skip
    rows = []
    for e in range(1, epochs + 1):
        rows.append([e, 3.2 * math.exp(-e / 8) + 0.5, 40 * math.exp(-e / 4) + 1.2,
                     2.1 * math.exp(-e / 10) + 0.9, 0, 0, 0, 0, 3.5 - 0.05 * e,
                     30 * math.exp(-e / 5) + 2, 2.5 - 0.03 * e, 0.0007])  # fmt: skip
    return write_csv(path, header, rows, pad=22)


def lightning_metrics(
    path: Path, f1: list[float], steps_per_epoch: int = 50, loss0: float = 0.7
) -> Path:
    """Lightning metrics.csv: a train row every 10 steps, a val row at each epoch end."""
    header = ["epoch", "step", "train/hm_loss_step", "train/off_loss_step", "val/F1",
              "val/precision", "val/recall", "val/fp_per_image"]  # fmt: skip
    rows: list[list[Any]] = []
    for e, f in enumerate(f1):
        for s in range(e * steps_per_epoch + 9, (e + 1) * steps_per_epoch, 10):
            hm = loss0 * math.exp(-s / 150) + 0.01
            rows.append([e, s, hm, 0.4 * math.exp(-s / 200) + 0.05, None, None, None, None])
        p = min(1.0, f * 1.1)
        r = f * p / (2 * p - f) if f > 0 else 0.0
        rows.append([e, (e + 1) * steps_per_epoch - 1, None, None, f, p, r, 3 * (1 - f)])
    return write_csv(path, header, rows)


def findings_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["id"]: f for f in report["findings"]}


def _ev(f: dict[str, Any], key: str) -> Any:
    return f["evidence"][key]


# --------------------------------------------------------------------------- readers


def test_lightning_sparse_rows_match_pandas(tmp_path: Path) -> None:
    import pandas as pd

    path = lightning_metrics(tmp_path / "lightning_logs" / "version_0" / "metrics.csv",
                             [0.0, 0.2, 0.5, 0.7])  # fmt: skip
    raw = read_log(tmp_path / "lightning_logs")
    assert raw.format == "lightning" and raw.x_name == "step"
    df = pd.read_csv(path)
    for col in ("train/hm_loss_step", "val/F1", "val/fp_per_image", "epoch"):
        want = df[["step", col]].dropna()
        s = raw.columns[col]
        np.testing.assert_allclose(s.x, want["step"].to_numpy(float))
        np.testing.assert_allclose(s.values, want[col].to_numpy(float), rtol=1e-5)
    m = map_columns(raw)
    assert m.columns["cls_loss"] == "train/hm_loss_step"
    assert m.columns["reg_loss"] == "train/off_loss_step"
    assert m.columns["f1"] == "val/F1" and m.columns["fp"] == "val/fp_per_image"


def test_ultralytics_padded_headers(tmp_path: Path) -> None:
    import pandas as pd

    path = never_converged_results(tmp_path / "train" / "results.csv")
    assert path.read_text().startswith(" " * 10)  # padded, as old ultralytics writes it
    raw = read_log(path)
    assert raw.format == "ultralytics" and raw.x_name == "epoch"
    df = pd.read_csv(path, skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    np.testing.assert_allclose(
        raw.columns["train/cls_loss"].values, df["train/cls_loss"], rtol=1e-5
    )
    np.testing.assert_allclose(raw.columns["train/cls_loss"].x, df["epoch"])
    m = map_columns(raw)
    assert m.columns["cls_loss"] == "train/cls_loss"  # the train one, not val/cls_loss
    assert m.columns["precision"] == "metrics/precision(B)"
    assert m.columns["map"] == "metrics/mAP50(B)"
    assert m.columns["f1"].startswith("2PR/(P+R)")


def test_csv_nan_is_kept_and_empty_is_missing(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "log.csv", ["iter", "loss", "note"],
                  [[1, 0.5, "a"], [2, "nan", "b"], [3, None, "c"], [4, "inf", "d"]])  # fmt: skip
    raw = read_log(p)
    s = raw.columns["loss"]
    np.testing.assert_array_equal(s.x, [1, 2, 4])
    assert s.values[0] == 0.5 and math.isnan(s.values[1]) and math.isinf(s.values[2])
    assert "note" not in raw.columns and any("non-numeric" in n for n in raw.notes)


def test_mmengine_jsonl_val_steps_counted_in_epochs(tmp_path: Path) -> None:
    lines = []
    step = 0
    for epoch in (1, 2, 3):
        for it in (50, 100):
            step += 50
            lines.append({"lr": 0.01, "data_time": 0.01, "loss": 2.0 / step,
                          "loss_cls": 1.0 / step, "time": 0.3, "epoch": epoch, "iter": it,
                          "memory": 900, "step": step})  # fmt: skip
        lines.append({"coco/bbox_mAP_50": 0.1 * epoch, "data_time": 0.01, "time": 0.1,
                      "step": epoch})  # fmt: skip
    p = tmp_path / "20240101_000000" / "vis_data" / "scalars.json"
    p.parent.mkdir(parents=True)
    p.write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    raw = read_log(tmp_path)
    assert raw.format == "jsonl"
    mp = raw.columns["coco/bbox_mAP_50"]
    # each epoch's validation sits at that epoch's last train step (100, 200, 300 x 0.5)
    np.testing.assert_array_equal(mp.x, [100, 200, 300])
    np.testing.assert_allclose(mp.values, [0.1, 0.2, 0.3])
    want = [(d["step"], d["loss_cls"]) for d in lines if "loss_cls" in d]
    np.testing.assert_allclose(raw.columns["loss_cls"].x, [w[0] for w in want])
    np.testing.assert_allclose(raw.columns["loss_cls"].values, [w[1] for w in want])
    m = map_columns(raw)
    assert m.columns["cls_loss"] == "loss_cls" and m.columns["map"] == "coco/bbox_mAP_50"


def test_mmdet2_log_json(tmp_path: Path) -> None:
    lines: list[dict[str, Any]] = [{"env_info": "sys.platform: linux", "seed": 0}]
    for epoch in (1, 2):
        for it in (50, 100):
            lines.append({"mode": "train", "epoch": epoch, "iter": it, "lr": 0.02,
                          "loss_cls": 0.5 / epoch, "loss": 1.0 / epoch})  # fmt: skip
        lines.append({"mode": "val", "epoch": epoch, "iter": 500, "lr": 0.02, "bbox_mAP": 0.0})
    p = tmp_path / "20240101.log.json"
    p.write_text("\n".join(json.dumps(d) for d in lines) + "\n")
    raw = read_log(p)
    np.testing.assert_array_equal(raw.columns["loss_cls"].x, [50, 100, 150, 200])
    np.testing.assert_array_equal(raw.columns["val/bbox_mAP"].x, [100, 200])
    assert "val/lr" in raw.columns and raw.columns["lr"].x.tolist() == [50, 100, 150, 200]


def test_jsonl_cut_last_line_is_skipped_but_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    p.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.5}\n{"step": 3, "lo')
    raw = read_log(p)
    assert raw.columns["loss"].values.tolist() == [1.0, 0.5]
    assert any("incomplete" in n for n in raw.notes)
    p.write_text('{"step": 1, "loss": 1.0}\nnot json\n{"step": 2, "loss": 0.5}\n')
    with pytest.raises(InputError, match=r"run\.jsonl: line 2"):
        read_log(p)


# --------------------------------------------------------------------------- TensorBoard


def _crc32c_bitwise(data: bytes) -> int:
    """CRC-32C bit by bit (no table): the test's own reference."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = _crc32c_bitwise(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _event(step: int, tag: str, value: float) -> bytes:
    """An Event proto, encoded by hand: step=2, summary=5 -> value=1 -> tag=1, simple_value=2."""
    val = _ld(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value)
    return (
        _varint(1 << 3 | 1)
        + struct.pack("<d", 1.0)
        + _varint(2 << 3)
        + _varint(step)
        + _ld(5, _ld(1, val))
    )


def _record(data: bytes) -> bytes:
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", _masked(head)) + data + struct.pack("<I", _masked(data))


def test_crc32c_known_vector_and_reference() -> None:
    assert _crc32c_bitwise(b"123456789") == 0xE3069283
    for data in (b"", b"a", bytes(range(256)) * 3):
        assert masked_crc32c(data) == _masked(data)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**40), 2**40),
            st.sampled_from(["loss", "val/F1", "train/hm_loss"]),
            st.floats(width=32, allow_nan=False),
        ),
        max_size=12,
    )
)
def test_hand_encoded_events_round_trip(events: list[tuple[int, str, float]]) -> None:
    for step, tag, value in events:
        got_step, scalars = parse_event(_event(step, tag, value))
        assert got_step == step and scalars == [(tag, value)]


def test_truncated_and_corrupt_event_files(tmp_path: Path) -> None:
    recs = [_record(_event(s, "loss", 1.0 / (s + 1))) for s in range(5)]
    p = tmp_path / "events.out.tfevents.1.host"
    p.write_bytes(b"".join(recs) + recs[0][:20])  # a run still writing
    data, notes = read_records(p)
    assert len(data) == 5 and any("incomplete" in n for n in notes)
    raw = read_log(p)
    np.testing.assert_allclose(raw.columns["loss"].values, [1.0 / (s + 1) for s in range(5)])
    bad = bytearray(b"".join(recs))
    bad[len(recs[0]) + 9] ^= 0xFF  # the second record's length CRC
    p.write_bytes(bytes(bad))
    data, notes = read_records(p)
    assert len(data) == 1 and any("corrupt" in n for n in notes)
    p.write_bytes(b"not an event file at all")
    with pytest.raises(InputError, match="not a TensorBoard event file"):
        read_records(p)


def _fixture_expected() -> dict[str, list[tuple[int, float]]]:
    spec = importlib.util.spec_from_file_location("make_tb", FIXTURES / "make_tensorboard.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out: dict[str, list[tuple[int, float]]] = mod.expected()
    return out


def test_real_summarywriter_file_without_tensorboard() -> None:
    """tests/fixtures/logs/tb was written by torch.utils.tensorboard.SummaryWriter
    (old- and new-style scalars, a double, histograms, add_scalars sub-folders)."""
    raw = read_log(FIXTURES / "tb")
    assert raw.format == "tensorboard" and len(raw.files) == 2
    for tag, pts in _fixture_expected().items():
        s = raw.columns[tag]
        np.testing.assert_array_equal(s.x, [p[0] for p in pts])
        want = np.array([p[1] for p in pts])
        np.testing.assert_allclose(s.values, want, rtol=1e-6)  # float32 on both sides
    assert "weights" not in raw.columns  # a histogram is not a scalar


def test_tensorboard_file_written_now_matches_tensorboards_reader(tmp_path: Path) -> None:
    import tensorboard  # noqa: F401  (installed by the dev extras: never skipped)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    for s in range(0, 200, 10):
        w.add_scalar("train/hm_loss", 1.0 / (s + 1), s)
        w.add_scalar("val/F1", 0.0 if s < 100 else s / 400.0, s, new_style=True)
    w.add_scalar("train/hm_loss", float("nan"), 200)
    w.close()
    acc = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    raw = read_log(tmp_path)
    ref = acc.Scalars("train/hm_loss")
    np.testing.assert_array_equal(raw.columns["train/hm_loss"].x, [e.step for e in ref])
    np.testing.assert_allclose(raw.columns["train/hm_loss"].values, [e.value for e in ref])
    tens = acc.Tensors("val/F1")
    np.testing.assert_array_equal(raw.columns["val/F1"].x, [t.step for t in tens])
    np.testing.assert_allclose(
        raw.columns["val/F1"].values, [t.tensor_proto.float_val[0] for t in tens]
    )
    assert findings_of(analyze_log(tmp_path))["non-finite-outputs"]["evidence"]["started_at"] == 200


# --------------------------------------------------------------------------- mapping


def test_parse_map_and_its_errors() -> None:
    assert parse_map("f1=val/F1, cls_loss = train/hm_loss,") == {
        "f1": "val/F1",
        "cls_loss": "train/hm_loss",
    }
    with pytest.raises(InputError, match="--map"):
        parse_map("f1")
    with pytest.raises(InputError, match="unknown key"):
        parse_map("accuracy=acc")


def test_map_overrides_and_unknown_column(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "my.csv", ["it", "hm", "score", "loss"],
                  [[i, 1.0 / (i + 1), 0.0, 1.0] for i in range(6)])  # fmt: skip
    raw = read_log(p, x_column="it")
    m = map_columns(raw, parse_map("cls_loss=hm,f1=score"))
    assert m.columns == {"cls_loss": "hm", "f1": "score", "loss": "loss"}
    np.testing.assert_array_equal(m.series["f1"].x, np.arange(6))
    with pytest.raises(InputError, match=r"--map f1=F1: no column 'F1' in .*my\.csv"):
        map_columns(raw, {"f1": "F1"})


def test_derived_f1_matches_formula() -> None:
    p = Series("p", np.array([1.0, 2, 3, 4]), np.array([0.5, 0.0, 0.8, 0.9]))
    r = Series("r", np.array([2.0, 3, 4, 5]), np.array([0.0, 0.4, 0.6, 0.1]))
    raw = RawLog("csv", "x.csv", ["x.csv"], {"P": p, "R": r})
    m = map_columns(raw, {"precision": "P", "recall": "R"})
    f1 = m.series["f1"]
    np.testing.assert_array_equal(f1.x, [2, 3, 4])
    want = [0.0, 2 * 0.8 * 0.4 / 1.2, 2 * 0.9 * 0.6 / 1.5]
    np.testing.assert_allclose(f1.values, want)


def test_no_recognised_columns_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "odd.csv", ["step", "foo", "bar"], [[1, 2, 3], [2, 3, 4]])
    res = CliRunner().invoke(cli, ["logs", str(p)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "odd.csv" in lines[0] and "no recognised columns" in lines[0]
    assert lines[0].startswith("convdiag: error:")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["missing_dir"], "no such file"),
        (["notes.txt"], "unknown log format"),
        (["empty"], "no training log found"),
        (["m.csv", "--map", "f1"], "--map"),
        (["m.csv", "--prior", "2"], "--prior"),
    ],
)
def test_bad_input_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    write_csv(tmp_path / "m.csv", ["step", "loss"], [[1, 1.0], [2, 0.5]])
    args = [str(tmp_path / args[0]), *args[1:]]
    res = CliRunner().invoke(cli, ["logs", *args])
    assert res.exit_code == 2, res.output
    assert needle in res.output and len(res.output.strip().splitlines()) == 1


def test_folder_picks_the_newest_run(tmp_path: Path) -> None:
    import os

    old = lightning_metrics(tmp_path / "lightning_logs/version_0/metrics.csv", [0.0] * 4)
    new = lightning_metrics(tmp_path / "lightning_logs/version_1/metrics.csv", [0.2, 0.5, 0.7, 0.8])
    os.utime(old, (1_000_000, 1_000_000))
    raw = read_log(tmp_path)
    assert raw.files == [str(new)] and any("newest" in n for n in raw.notes)


# --------------------------------------------------------------------------- symptoms


def test_never_converged_ultralytics_run(tmp_path: Path) -> None:
    p = never_converged_results(tmp_path / "results.csv")
    report = analyze_log(p)
    fs = findings_of(report)
    f = fs["background-collapse"]
    assert f["severity"] == "error" and report["findings"][0]["id"] == "background-collapse"
    assert _ev(f, "started_at") == 1 and _ev(f, "axis") == "epoch"
    assert _ev(f, "evaluations") == 15 and _ev(f, "loss_drop") > 0.5
    assert f["remedies"][0]["id"] == "focal-loss"
    assert "fp-flood" not in fs and report["source"]["axis"] == "epoch"


def test_real_convdiag_history_of_a_collapsed_run(tmp_path: Path) -> None:
    """history.csv of a real `convdiag train` run (hard labels, BCE, zero bias, P2): the
    log's own constant_loss column is the reference when no prior is given."""
    import csv

    src = FIXTURES / "convdiag_history_p2_hard_bce.csv"
    rows = list(csv.DictReader(src.open()))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "history.csv").write_bytes(src.read_bytes())
    report = analyze_log(tmp_path / "run")  # found in the folder
    assert report["source"]["columns"]["cls_loss"] == "train_cls_loss"
    f = findings_of(report)["background-collapse"]
    const = float(rows[0]["constant_loss"])
    inside = [int(r["step"]) for r in rows if abs(float(r["train_cls_loss"]) / const - 1) <= 0.3]
    assert _ev(f, "started_at") == int(rows[0]["step"])  # F1 was 0 from the first evaluation
    assert _ev(f, "cls_at_constant_from") == inside[0]
    assert _ev(f, "constant_loss") == pytest.approx(const, rel=1e-3)
    assert "the log's constant_loss column" in f["explanation"]


def test_healthy_run_has_no_symptom(tmp_path: Path) -> None:
    p = lightning_metrics(tmp_path / "metrics.csv", [0.05, 0.3, 0.55, 0.7, 0.75, 0.78])
    report = analyze_log(p, level="P2")
    assert [f["id"] for f in report["findings"]] == ["healthy"]
    assert report["verdict"].startswith("healthy")
    res = CliRunner().invoke(cli, ["logs", str(p), "--fail-on", "warning", "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.output)["schema"] == 1


def test_collapse_after_learning_starts_where_f1_fell(tmp_path: Path) -> None:
    f1 = [0.1, 0.4, 0.6, 0.6, 0.05, 0.0, 0.0, 0.0]
    p = lightning_metrics(tmp_path / "metrics.csv", f1)
    f = findings_of(analyze_log(p))["background-collapse"]
    assert _ev(f, "started_at") == 4 * 50 + 49  # the val row of epoch 4
    assert _ev(f, "evaluations") == 4


def test_f1_low_with_recall_high_is_fp_flood_not_collapse(tmp_path: Path) -> None:
    rows = [[e, 1.0 / e, 0.05, 0.9, 40.0 - 0.1 * e] for e in range(1, 9)]
    p = write_csv(tmp_path / "log.csv", ["epoch", "loss", "val/precision", "val/recall", "val/fp"],
                  rows)  # fmt: skip
    fs = findings_of(analyze_log(p))
    assert "background-collapse" not in fs
    f = fs["fp-flood"]
    assert _ev(f, "started_at") == 1 and _ev(f, "fp_drop") < 0.3
    # no hit at all but many false positives: a flood too, as in analyze
    rows = [[e, 1.0 / e, 0.0, 0.0, 40.0] for e in range(1, 9)]
    p = write_csv(tmp_path / "log1.csv", ["epoch", "loss", "val/F1", "val/recall", "val/fp"],
                  rows)  # fmt: skip
    assert [f["id"] for f in analyze_log(p)["findings"]] == ["fp-flood"]
    # falling false positives are not a flood
    rows = [[e, 1.0 / e, 0.05, 0.9, 40.0 / e] for e in range(1, 9)]
    p = write_csv(tmp_path / "log2.csv", ["epoch", "loss", "val/precision", "val/recall", "val/fp"],
                  rows)  # fmt: skip
    assert "fp-flood" not in findings_of(analyze_log(p))


def test_cls_loss_at_constant_predictor_without_metrics(tmp_path: Path) -> None:
    prior = 3e-4
    c = -(prior * math.log(prior) + (1 - prior) * math.log(1 - prior))  # independent: entropy
    assert constant_from_prior(prior, "bce") == pytest.approx(c, rel=1e-9)
    steps = list(range(0, 1000, 20))
    cls = [0.69 * math.exp(-s / 40) + c * 1.05 for s in steps]
    rows = [[s, v] for s, v in zip(steps, cls, strict=True)]
    p = write_csv(tmp_path / "log.csv", ["step", "cls_loss"], rows)
    report = analyze_log(p, prior=prior)
    f = findings_of(report)["background-collapse"]
    first_in = next(s for s, v in zip(steps, cls, strict=True) if abs(v / c - 1) <= 0.3)
    assert _ev(f, "started_at") == first_in
    assert _ev(f, "loss_ratio") == pytest.approx(1.05, abs=0.01)
    assert report["reference"]["constant_loss"] == pytest.approx(c)
    # the same curve well below the constant predictor is fine
    p2 = write_csv(tmp_path / "ok.csv", ["step", "cls_loss"],
                   [[s, v * 0.3] for s, v in zip(steps, cls, strict=True)])  # fmt: skip
    assert "background-collapse" not in findings_of(analyze_log(p2, prior=prior))


def test_focal_constant_against_numerical_minimum() -> None:
    prior = 1e-3
    z = np.linspace(-20, 5, 200001)
    p = 1 / (1 + np.exp(-z))
    # CenterNet focal, hard labels, per positive: -(1-p)^2 log p - (1-prior)/prior p^2 log(1-p)
    f = -((1 - p) ** 2) * np.log(p) - (1 - prior) / prior * p**2 * np.log1p(-p)
    assert constant_from_prior(prior, "focal") == pytest.approx(f.min(), rel=1e-4)


def test_offset_loss_flat_at_mean_predictor(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    steps = list(range(0, 1000, 25))
    reg = [0.6 if s < 300 else 0.25 + 0.004 * rng.standard_normal() for s in steps]
    rows = [[s, v] for s, v in zip(steps, reg, strict=True)]
    p = write_csv(tmp_path / "log.csv", ["step", "off_loss"], rows)
    f = findings_of(analyze_log(p, level="P4"))["regression-collapse"]
    assert f["severity"] == "error" and _ev(f, "started_at") == 300 and f["level"] == "P4"
    assert f["remedies"][0]["id"] == "fused-head"
    # P2's cell centre is within the radius already: a warning
    f = findings_of(analyze_log(p, level="P2"))["regression-collapse"]
    assert f["severity"] == "warning"
    # an offset head that learns (loss falling to 0.05) is not flagged
    p = write_csv(tmp_path / "ok.csv", ["step", "off_loss"],
                  [[s, 0.25 * math.exp(-s / 200) + 0.02] for s in steps])  # fmt: skip
    assert "regression-collapse" not in findings_of(analyze_log(p, level="P4"))


def test_loss_constant_to_six_decimals_and_exactly_zero(tmp_path: Path) -> None:
    hm = [12.1, 10.3, 9.208497, 9.208497, 9.2084971, 9.208497, 9.208497, 9.208497, 9.5]
    off = [0.0] * 9
    p = write_csv(
        tmp_path / "log.csv",
        ["epoch", "hm_loss", "off_loss"],
        [[e + 1, a, b] for e, (a, b) in enumerate(zip(hm, off, strict=True))],
    )
    report = analyze_log(p)
    plateau = {_ev(f, "series"): f for f in report["findings"] if f["id"] == "loss-plateau"}
    f = plateau["cls_loss"]
    assert f["severity"] == "warning" and _ev(f, "values_equal") == 6
    assert _ev(f, "started_at") == 3 and _ev(f, "until") == 8
    z = plateau["reg_loss"]
    assert "exactly 0" in z["explanation"] and z["remedies"][0]["id"] == "oversample"
    res = CliRunner().invoke(cli, ["logs", str(p), "--fail-on", "warning", "--format", "json"])
    assert res.exit_code == 1
    res = CliRunner().invoke(cli, ["logs", str(p), "--fail-on", "error", "--format", "json"])
    assert res.exit_code == 0


def test_non_finite_values_start_where_they_appear(tmp_path: Path) -> None:
    rows = [[s, 1.0 / (s + 1) if s < 500 else "nan", 0.3] for s in range(0, 800, 50)]
    p = write_csv(tmp_path / "log.csv", ["step", "loss", "val/F1"], rows)
    report = analyze_log(p)
    f = findings_of(report)["non-finite-outputs"]
    assert _ev(f, "started_at") == 500 and _ev(f, "nonfinite_values") == 6
    assert report["metrics"]["loss"]["nonfinite"] == 6


def test_few_evaluations_are_not_a_collapse(tmp_path: Path) -> None:
    p = lightning_metrics(tmp_path / "metrics.csv", [0.0, 0.0])
    assert "background-collapse" not in findings_of(analyze_log(p))


def test_prior_from_dataset_matches_a_cell_count(tmp_path: Path) -> None:
    from convdiag.load.datasets import load_dataset
    from convdiag.load.synth import SynthConfig, synthesize

    root = tmp_path / "data"
    synthesize(root, SynthConfig(n=6, size=(64, 96), seed=3))
    ds = load_dataset(root)
    pos = cells = 0
    offs = []
    for r in ds.records:
        gh, gw = -(-r.size[0] // 4), -(-r.size[1] // 4)
        cells += gh * gw
        pos += len({(int(y // 4), int(x // 4)) for x, y in r.points})
        offs += [(x / 4 % 1, y / 4 % 1) for x, y in r.points]
    t = np.array(offs)
    raw = RawLog(
        "csv", "x.csv", ["x.csv"], {"cls_loss": Series("cls_loss", np.zeros(2), np.ones(2))}
    )
    ref_ = build_reference(map_columns(raw), None, "bce", None, root)
    assert ref_.level == "P2" and ref_.prior == pytest.approx(pos / cells)
    assert ref_.reg_constant == pytest.approx(np.mean(np.abs(t - np.median(t, axis=0))))
    assert any("P2 assumed" in n for n in ref_.notes)


def test_find_symptoms_on_plain_series() -> None:
    x = np.arange(10, dtype=float)
    raw = RawLog("csv", "x.csv", ["x.csv"], {
        "loss": Series("loss", x, 1.0 / (x + 1)),
        "F": Series("F", x, np.zeros(10)),
        "Pd": Series("Pd", x, np.zeros(10)),
    })  # fmt: skip
    m = map_columns(raw, {"f1": "F", "recall": "Pd"})
    fs = find_symptoms(m, Reference(level="P2"), Thresholds(min_points=11))
    # 10 evaluations < 11 required: too short to judge, never "healthy" (issue 11)
    assert [f.id for f in fs] == ["too-short"]
    assert fs[0].evidence["points"] == 10 and fs[0].evidence["min_points"] == 11
    fs = find_symptoms(m, Reference(level="P2"))
    assert fs[0].id == "background-collapse" and fs[0].evidence["started_at"] == 0


# --------------------------------------------------------------------------- CLI and report


def test_cli_out_writes_report_markdown_and_timeline(tmp_path: Path) -> None:
    from PIL import Image

    p = never_converged_results(tmp_path / "run" / "results.csv")
    out = tmp_path / "rep"
    res = CliRunner().invoke(
        cli, ["logs", str(tmp_path / "run"), "--out", str(out), "--fail-on", "error"]
    )
    assert res.exit_code == 1, res.output
    assert "background-collapse" in res.output and "Verdict" in res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["kind"] == "logs" and rep["source"]["files"] == [str(p)]
    assert rep["plots"] == {"timeline": "timeline.png"}
    with Image.open(out / "timeline.png") as im:
        assert im.format == "PNG" and im.size[0] > 600
    md = (out / "report.md").read_text()
    assert "## Findings" in md and "![timeline](timeline.png)" in md
    res = CliRunner().invoke(cli, ["logs", str(p), "--format", "markdown"])
    assert res.exit_code == 0 and res.output.startswith("# convdiag logs")


def test_cli_json_is_alone_on_stdout(tmp_path: Path) -> None:
    p = lightning_metrics(tmp_path / "metrics.csv", [0.0] * 5)
    res = CliRunner().invoke(cli, ["logs", str(p), "--format", "json", "--prior", "3e-4"])
    assert res.exit_code == 0
    data = json.loads(res.stdout)
    assert set(data) >= {"schema", "kind", "verdict", "findings", "metrics", "source"}
    assert data["reference"]["prior"] == 3e-4 and data["source"]["columns"]["f1"] == "val/F1"


def test_cli_tensorboard_fixture(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["logs", str(FIXTURES / "tb"), "--level", "P4", "--format", "json", "--fail-on",
              "error"]
    )  # fmt: skip
    assert res.exit_code == 1
    ids = [f["id"] for f in json.loads(res.stdout)["findings"]]
    assert ids[:2] == ["background-collapse", "regression-collapse"]
