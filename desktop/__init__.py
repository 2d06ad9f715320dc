"""The composition root: config and policy, keys, sign-in, workers, tray, CLI, app."""

__version__ = "0.1.0"
