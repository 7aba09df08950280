"""``convdiag logs PATH``: symptoms over time in a training log."""

from __future__ import annotations

from typing import Any

import click

from convdiag.cli.options import DatasetOptions, RunOptions, dataset_options, run_options
from convdiag.watch.discover import FORMATS


@click.command("logs")
@click.argument("paths", metavar="PATH [PATH...]", nargs=-1, required=True, type=click.Path())
@click.option(
    "--log-format",
    type=click.Choice(list(FORMATS)),
    default="auto",
    show_default=True,
    help="Log format; auto goes by the file name (metrics.csv, results.csv, "
    "events.out.tfevents.*, *.json/*.jsonl/*.log.json, history.csv, other *.csv) and, for "
    "text logs (mmdetection/mmengine, BasicIRSTD/DNANet, CenterNet log.txt, YOLO console "
    "output), by the content.",
)
@click.option(
    "--map",
    "mapping",
    default=None,
    metavar="KEY=COLUMN,...",
    help="Name the columns: keys step, epoch, loss, cls_loss, reg_loss, f1, precision, "
    "recall (Pd), fp (per image), map, lr, constant_loss.",
)
@click.option(
    "--prior",
    type=float,
    default=None,
    help="Label prior (positive cells / cells) for the constant-predictor loss.",
)
@click.option(
    "--data",
    type=click.Path(),
    default=None,
    help="Dataset to compute the prior, offset reference and remedy sizes from (with --level).",
)
@click.option(
    "--level", default=None, help="Level of the logged head, e.g. P2 (default P2 with --data)."
)
@click.option(
    "--loss",
    type=click.Choice(["bce", "focal"]),
    default="bce",
    show_default=True,
    help="Classification loss of the run (for the constant-predictor loss).",
)
@click.option(
    "--margin",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.3,
    show_default=True,
    help="cls loss within this share of the constant predictor's = at it.",
)
@click.option(
    "--reg-margin",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="Offset loss within this share of the mean predictor's = at it (0.15 ~ R^2 < 0.25).",
)
@click.option(
    "--run",
    "run_index",
    type=click.IntRange(min=1),
    default=None,
    help="Which run of a file holding several (its steps restart), 1-based; default the last.",
)
@dataset_options()
@run_options()
def command(
    paths: tuple[str, ...],
    log_format: str,
    mapping: str | None,
    prior: float | None,
    data: str | None,
    level: str | None,
    loss: str,
    margin: float,
    reg_margin: float,
    run_index: int | None,
    dataset: DatasetOptions,
    run: RunOptions,
) -> int:
    """Find convergence symptoms over time in the training log at PATH (file or folder);
    with several PATHs, judge each and compare them side by side.

    \b
    Formats (found by file name, and text logs by content):
      lightning    metrics.csv (CSVLogger)
      ultralytics  results.csv (YOLOv5, YOLOv8/11)
      tensorboard  events.out.tfevents.* (a folder: one run per writing process, --run K)
      jsonl        mmengine scalars.json / vis_data/*.json, mmdet 2.x *.log.json
      csv          convdiag history.csv, any CSV with --log-format csv
      text         mmdetection 2.x / mmengine .log, BasicIRSTD/DNANet, CenterNet log.txt,
                   YOLO console output saved to a file (non-UTF-8 bytes replaced)

    \b
    Symptoms, each with the step it started:
      background-collapse  F1 (else recall/Pd, mAP, IoU) stuck < 0.1 to the end while the
                           loss falls; cls loss within --margin of the constant predictor's
      fp-flood             FP per image > 5 and not falling (or precision < 0.3, recall ok)
      regression-collapse  offset loss (mean L1 in cells, unweighted) flat at the mean
                           predictor's: 0.25 for uniform offsets, measured with --data
      loss-plateau         a loss constant to 6 decimals for 5 values (exactly 0: no positives)
      non-finite-outputs   NaN or Inf anywhere
      validation-off       validation losses exactly 0, or metrics 0 until the last point
      single-class-cls-loss  cls loss exactly 0 beside box/obj losses (single-class YOLO):
                           the objectness loss plays the classification role (info)
      too-short            fewer evaluations than the rules need (info; never "healthy")
      healthy              no rule crossed its threshold (info)

    \b
    Columns are found by name (case-insensitive; Lightning's _step/_epoch suffixes too):
      loss       train/loss, train_loss, loss, total_loss
      cls_loss   train/hm_loss, hm_loss, train/cls_loss, cls_loss, loss_cls, loss_hm,
                 heatmap_loss, focal_loss
      reg_loss   train/off_loss, off_loss, offset_loss, reg_loss, loss_offset, loss_reg
      f1         val/F1, val_f1, f1, f1_at_0.5, f1_score (else 2PR/(P+R))
      precision  val/precision, precision, metrics/precision(B)
      recall     val/recall, recall, val/Pd, pd, metrics/recall(B)
      fp         val/fp_per_image, fp_per_image, val/fp, fp
      map        metrics/mAP50(B), map50, coco/bbox_mAP_50, val/map, map
      iou, niou  Eval/mIoU, Eval/IoU, mIoU, IoU; Eval/nIoU, nIoU (infrared segmentation)
      fa         Eval/Fa, Fa (false-alarm pixel rate, or pixels per image above 1)
      obj_loss   train/obj_loss, obj_loss, loss_obj
      lr         lr, train/lr, lr/pg0, x/lr0, lr-AdamW, learning_rate
    Anything else: --map f1=val/F1,cls_loss=train/hm_loss,step=global_step.

    \b
    Examples:
      convdiag logs lightning_logs/version_3 --prior 2.9e-4
      convdiag logs runs/detect/train/results.csv --fail-on error
      convdiag logs work_dirs/exp/ --data data/ --level P2 --out report/
      convdiag logs work_dirs/exp/20240101_120000.log
      convdiag logs runs/train/exp runs/train/exp2      # two runs side by side
    """
    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.report.console import emit
    from convdiag.report.logs_report import render_markdown, render_table
    from convdiag.watch.analysis import analyze_log

    kw: dict[str, Any] = dict(
        log_format=log_format,
        mapping=mapping,
        prior=prior,
        data=data,
        dataset=dataset if data else None,
        level=level,
        loss=loss,
        margin=margin,
        reg_margin=reg_margin,
        run=run_index,
    )
    if len(paths) > 1:
        return _compare(list(paths), kw, run)
    report = _with_progress(
        paths[0], run.format == "json", lambda: analyze_log(paths[0], out=run.out, **kw)
    )

    def render(console: Any) -> None:
        render_table(console, report)
        if run.out:
            console.print(
                f"[dim]Wrote {run.out}/report.json, report.md, report.html and timeline.png.[/]"
            )

    emit(report, run.format, render, lambda: render_markdown(report))
    return exit_code([Finding.from_dict(f) for f in report["findings"]], run.fail_on)


PROGRESS_MIN_BYTES = 16 * 2**20  # files smaller than this read too fast for a bar


def _with_progress(path: str, quiet: bool, work: Any) -> Any:
    """Run ``work()``; reading a large log file draws a progress bar (MiB) on stderr."""
    import os

    from convdiag.report.console import progress
    from convdiag.watch.progress import reporting

    try:
        size = os.stat(path).st_size if os.path.isfile(path) else 0
    except OSError:
        size = 0
    if size < PROGRESS_MIN_BYTES:
        return work()
    with progress(f"reading {os.path.basename(path)} (MiB)", size >> 20, quiet) as advance:
        done = [0]

        def moved(pos: int) -> None:
            mib = min(pos, size) >> 20
            if mib > done[0]:
                advance(mib - done[0])
                done[0] = mib

        with reporting(moved):
            return work()


def _compare(paths: list[str], kw: dict[str, Any], run: RunOptions) -> int:
    from convdiag.diagnosis.findings import Finding, exit_code
    from convdiag.report.console import emit
    from convdiag.report.logs_compare import render_markdown, render_table
    from convdiag.watch.compare import compare_logs

    report = compare_logs(paths, out=run.out, **kw)

    def render(console: Any) -> None:
        render_table(console, report)
        if run.out:
            console.print(f"[dim]Wrote {run.out}/report.json, report.md, report.html, run*/.[/]")

    emit(report, run.format, render, lambda: render_markdown(report))
    return max(
        exit_code([Finding.from_dict(f) for f in r["findings"]], run.fail_on)
        for r in report["run_reports"].values()
    )
