"""``MonitorCallback``: the Lightning callback that feeds a ``Monitor``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convdiag.errors import InputError
from convdiag.watch.monitor import Monitor

_CALLBACK_CLASS: Any = None


def monitor_callback(
    monitor: Monitor | None = None, log: bool = True, **monitor_kwargs: Any
) -> Any:
    """A Lightning callback that feeds a ``Monitor`` from ``training_step``'s return value.

    ``training_step`` returns {"loss": loss, "outputs": model_output, "targets": [N, 2]
    points per image, "image_size": (H, W) (optional)}; ``outputs``/``targets`` are only read
    on the steps the monitor measures. With ``log``, the statistics go to the Lightning
    logger as ``convdiag/<name>``, so ``convdiag logs`` reads them back. Requires the
    ``lightning`` package (extra ``convdiag[lightning]``); the monitor is ``.monitor``.
    """
    global _CALLBACK_CLASS
    try:
        import lightning.pytorch as pl
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError(
            "MonitorCallback needs Lightning: pip install 'convdiag[lightning]'"
        ) from None
    if _CALLBACK_CLASS is None:

        class _MonitorCallback(pl.Callback):
            def __init__(self, monitor: Monitor, log: bool) -> None:
                super().__init__()
                self.monitor = monitor
                self.log = log

            def on_train_batch_end(
                self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
            ) -> None:
                if not self.monitor.due():
                    self.monitor.skip()
                    return
                if not isinstance(outputs, Mapping) or "outputs" not in outputs:
                    raise InputError(
                        "MonitorCallback: training_step must return a dict with 'loss', "
                        "'outputs' and 'targets'"
                    )
                st = self.monitor.update(
                    outputs["outputs"],
                    outputs["targets"],
                    outputs.get("loss"),
                    model=pl_module,
                    image_size=outputs.get("image_size"),
                    step=int(trainer.global_step),
                )
                if self.log and st:
                    vals = {
                        f"convdiag/{k}": float(v)
                        for k, v in st.items()
                        if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
                    }
                    pl_module.log_dict(vals, on_step=True, on_epoch=False)

        _CALLBACK_CLASS = _MonitorCallback
    return _CALLBACK_CLASS(monitor or Monitor(**monitor_kwargs), log)


def MonitorCallback(monitor: Monitor | None = None, log: bool = True, **monitor_kwargs: Any) -> Any:
    """A Lightning callback that feeds a ``Monitor`` from ``training_step``'s return value
    (see ``monitor_callback``; needs the ``lightning`` package)."""
    return monitor_callback(monitor, log, **monitor_kwargs)
