"""The core never imports the window, the tray or the composition root; the simulator imports no app code."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update((str(path.relative_to(ROOT)), a.name.split(".")[0]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_sync_imports_no_ui_or_desktop():
    bad = {(f, m) for f, m in imported_modules("sync") if m in {"webview", "pystray", "desktop", "ui"}}
    assert not bad


def test_ui_does_not_import_desktop():
    assert not {(f, m) for f, m in imported_modules("ui") if m == "desktop"}


def test_simulator_imports_nothing_of_the_app():
    assert not {(f, m) for f, m in imported_modules("simulator") if m in {"sync", "ui", "desktop"}}


def test_only_the_store_opens_the_database():
    """Tried: every import in the app, the simulator, the installer, the benchmarks and the tests.
    Only sync/store.py may import the SQLCipher driver, sqlite-utils or any SQLite binding: the
    cache has one door (named queries behind the store's lock and error translation)."""
    drivers = {"sqlcipher3", "sqlite_utils", "sqlite3", "pysqlite3"}
    found = set()
    for package in ("sync", "ui", "desktop", "simulator", "installer", "bench", "tests"):
        found |= {(f, m) for f, m in imported_modules(package) if m in drivers}
    assert ("sync/store.py", "sqlcipher3") in found  # the rule sees imports (it can fail)
    assert {f for f, _ in found} == {"sync/store.py"}
