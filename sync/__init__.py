"""Lifeboat's headless core: model, encrypted store, sources, routes, outbox, failover, engine.

Nothing in this package imports `webview`, `pystray` or `desktop` (tests/test_layering.py enforces it).
"""
