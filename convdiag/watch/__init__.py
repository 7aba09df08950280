"""Training logs: read Lightning, TensorBoard, JSON-lines and ultralytics logs (or any CSV),
map their columns to canonical keys, and find convergence symptoms over time.

    report = analyze_log("runs/exp1", prior=2.9e-4, out="report/")
"""

from __future__ import annotations

from convdiag.diagnosis.thresholds import Thresholds
from convdiag.watch.analysis import analyze_log, build_reference, constant_from_prior
from convdiag.watch.discover import find_log, read_log
from convdiag.watch.mapping import AUTO_NAMES, KEYS, MappedLog, map_columns, parse_map
from convdiag.watch.symptoms import Reference, find_symptoms
from convdiag.watch.table import RawLog, Series

__all__ = [
    "AUTO_NAMES",
    "KEYS",
    "MappedLog",
    "RawLog",
    "Reference",
    "Series",
    "Thresholds",
    "analyze_log",
    "build_reference",
    "constant_from_prior",
    "find_log",
    "find_symptoms",
    "map_columns",
    "parse_map",
    "read_log",
]
