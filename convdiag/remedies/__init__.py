"""The remedy stage: the catalogue (``catalogue``) and applying a remedy (``apply``)."""
