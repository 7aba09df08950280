"""The one rule core: finding ids, severities, thresholds and rules (see catalogue)."""

from convdiag.diagnosis import thresholds as _thresholds  # registers the config keys

__all__: list[str] = []
del _thresholds
