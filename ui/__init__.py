"""The window: a thin pywebview bridge (`bridge.py`) and the static page (`static/`)."""
