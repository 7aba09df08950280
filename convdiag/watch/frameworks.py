"""Which framework wrote a log, and the framework's own setting for each remedy.

The remedy ids are convdiag's (``retrain --remedy``); a user training with ultralytics or
mmdetection applies them in that framework's config. ``framework_of`` reads the log's
format and column names; ``annotate`` adds the framework's setting to each remedy's text
and says when a remedy assumes a heatmap detector the framework does not train.
"""

from __future__ import annotations

from convdiag.diagnosis.findings import Finding
from convdiag.watch.mapping import norm
from convdiag.watch.table import RawLog

# Frameworks whose head is a heatmap of cells (the remedies' own setting).
HEATMAP = ("convdiag", "centernet", "irstd")
# Remedies that change heatmap labels or the head's level: they assume a heatmap detector.
HEATMAP_ONLY = ("soft-labels", "sigma-schedule", "level-change", "fused-head")

SETTINGS: dict[str, dict[str, str]] = {
    "yolov5": {
        "focal-loss": "hyp.yaml fl_gamma: 1.5 (focal loss on the cls and obj BCE)",
        "pos-weight": "hyp.yaml obj_pw / cls_pw (BCE positive weights)",
        "loss-ramp": "hyp.yaml obj / cls (loss gains)",
        "oversample": "train.py --image-weights (images drawn by their class weights)",
        "copy-paste": "hyp.yaml copy_paste (segment labels only)",
        "level-change": "a P2 detection layer in the model yaml (yolov5-p2.yaml)",
    },
    "ultralytics": {
        "focal-loss": "no switch: the detection loss (v8DetectionLoss) uses plain BCE; "
        "wrap it in ultralytics' FocalLoss through a custom trainer",
        "loss-ramp": "train cls= / box= / dfl= (loss gains)",
        "copy-paste": "train copy_paste= (segment labels only)",
        "level-change": "the P2 model yaml (yolov8-p2.yaml)",
    },
    "mmdetection": {
        "focal-loss": "bbox_head.loss_cls=dict(type='FocalLoss', use_sigmoid=True, "
        "gamma=2.0, alpha=0.25)",
        "loss-ramp": "bbox_head.loss_cls.loss_weight (and loss_bbox.loss_weight)",
        "ohem": "train_cfg sampler=dict(type='OHEMSampler') (two-stage heads)",
        "oversample": "train_dataloader.dataset=dict(type='ClassBalancedDataset', "
        "oversample_thr=...)",
        "copy-paste": "train_pipeline dict(type='CopyPaste')",
    },
    "centernet": {
        "loss-ramp": "--hm_weight / --off_weight (opts.py loss weights)",
        "soft-labels": "the Gaussian radius of draw_umich_gaussian (it already draws one)",
        "focal-loss": "already the heatmap loss (CenterNet's focal loss, alpha 2, beta 4)",
    },
    "irstd": {
        "soft-labels": "a Gaussian-blurred mask as the target of the SoftIoU loss",
    },
}


def framework_of(raw: RawLog) -> str | None:
    """The framework that wrote ``raw``, from its format and columns (None: unknown)."""
    cols = {norm(c) for c in raw.columns}
    if raw.format == "text-centernet" or {"hm_loss", "train/hm_loss"} & cols:
        return "centernet"
    if raw.format == "text-irstd" or {"eval/iou", "eval/niou", "miou", "niou"} & cols:
        return "irstd"
    yolo = raw.format in ("ultralytics", "text-yolo") or any(
        c.startswith("metrics/map") or c == "train/box_loss" for c in cols
    )
    if yolo:
        return "yolov5" if any("obj_loss" in c for c in cols) else "ultralytics"
    if raw.format == "text-mmlab" or any(
        c.startswith("coco/") or c in ("loss_cls", "loss_bbox", "bbox_map") for c in cols
    ):
        return "mmdetection"
    if raw.format == "csv" and "constant_loss" in cols:
        return "convdiag"
    return None


def annotate(findings: list[Finding], framework: str | None) -> None:
    """Add the framework's setting to each remedy's ``why`` (in place), and say when a
    remedy assumes a heatmap detector that the framework does not train."""
    if framework is None:
        return
    table = SETTINGS.get(framework, {})
    for f in findings:
        for r in f.remedies:
            setting = table.get(r.id)
            if setting:
                r.why += f" [{framework}: {setting}]"
            elif framework not in HEATMAP and r.id in HEATMAP_ONLY:
                r.why += f" [assumes a heatmap detector; {framework} has no such setting]"
