"""The one rule core: finding ids, severities, thresholds and rules (see catalogue)."""
