"""The core never imports the window, the tray or the composition root; the simulator imports no app code."""

import ast
import re
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


# "Builds headers", checkably: outside sync/compose.py and sync/mime.py no module in sync/, ui/ or desktop/
# - imports email.mime, email.generator, email.header or email.headerregistry (the header-making parts);
# - calls a message constructor (EmailMessage(), Message(), MIMEText() ...) or a header-making method
#   (add_header, replace_header, set_param, set_content, add_attachment, add_alternative, set_payload,
#   fold, fold_binary, header_factory);
# - sets or deletes a message header by subscript (`msg["Subject"] = ...`, `del msg["Bcc"]`) for one of
#   the header names below spelt as a header (capitalised: a JSON key such as Graph's "from" is not one);
# - writes a header line as a literal (`b"Bcc: "`, `"Message-ID:"` at the start of a str or bytes constant).
HEADER_BUILDERS = {"sync/compose.py", "sync/mime.py"}
EMAIL_HEADERS = {"from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references",
                 "reply-to", "sender", "mime-version", "content-type", "content-transfer-encoding",
                 "content-disposition", "resent-from", "resent-to", "resent-cc", "resent-bcc"}
HEADER_MODULES = {"email.mime", "email.generator", "email.header", "email.headerregistry"}
MESSAGE_CLASSES = {"EmailMessage", "Message", "MIMEPart", "MIMEText", "MIMEMultipart", "MIMEBase",
                   "MIMEApplication", "MIMEImage", "MIMEAudio", "MIMEMessage", "MIMENonMultipart", "Header"}
HEADER_METHODS = {"add_header", "replace_header", "set_param", "set_content", "add_attachment",
                  "add_alternative", "set_payload", "fold", "fold_binary", "header_factory"}
_HEADER_LINE = re.compile(r"(?i)^(?:" + "|".join(re.escape(h) for h in EMAIL_HEADERS) + r")[ \t]*:")


def header_building(path: Path) -> list[str]:
    """Where `path` builds e-mail headers (by the definition above), as 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        where = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {n}" for n in names
                      if any(n == m or n.startswith(m + ".") for m in HEADER_MODULES)]
        elif isinstance(node, ast.Call):
            func = node.func
            name = (func.id if isinstance(func, ast.Name)
                    else func.attr if isinstance(func, ast.Attribute) else "")
            if name in MESSAGE_CLASSES or (isinstance(func, ast.Attribute) and name in HEADER_METHODS):
                found.append(f"{where}: calls {name}")
        elif isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
            targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
            for t in targets:
                if (isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                        and isinstance(t.slice.value, str) and t.slice.value[:1].isupper()
                        and t.slice.value.lower() in EMAIL_HEADERS):
                    found.append(f"{where}: sets header {t.slice.value}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if _HEADER_LINE.match(text):
                found.append(f"{where}: writes a header line {text[:20]!r}")
    return found


def test_only_compose_and_mime_build_headers():
    """Tried: every module of sync/, ui/ and desktop/ against the definition above; compose and mime are
    the only ones allowed (and the check does find what they do, so it is not blind)."""
    bad = {}
    for package in ("sync", "ui", "desktop"):
        for path in (ROOT / package).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if rel not in HEADER_BUILDERS and (hits := header_building(path)):
                bad[rel] = hits
    assert not bad
    assert header_building(ROOT / "sync/mime.py") and header_building(ROOT / "sync/compose.py")


def test_only_the_engine_queues_into_the_outbox():
    """Tried: every call of `outbox_add` in sync/, ui/ and desktop/: only sync/engine.py's queue() (the one
    door that composes and checks a message) may call it; the store defines it."""
    callers = set()
    for package in ("sync", "ui", "desktop"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "outbox_add"):
                    callers.add(str(path.relative_to(ROOT)))
    assert callers == {"sync/engine.py"}


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


# The network libraries belong to the adapters: sync/sources (Graph, the reference probes), sync/routes
# (the SMTP and Graph send routes) and desktop/auth.py, the adapter around msal, which raises requests'
# own exceptions and must translate them. Everything else reaches the network through those.
NETWORK_LIBRARIES = {"requests", "urllib3", "smtplib", "aiosmtplib", "httpx"}
NETWORK_ADAPTERS = ("sync/sources/", "sync/routes/", "desktop/auth.py")


def test_only_adapters_import_the_network_libraries():
    """Tried: every import (also inside functions) in sync/, ui/ and desktop/: only the adapters import
    requests, urllib3 or smtplib (and the rule sees an adapter's import, so it can fail)."""
    found = set()
    for package in ("sync", "ui", "desktop"):
        found |= {(f, m) for f, m in imported_modules(package) if m in NETWORK_LIBRARIES}
    assert ("sync/sources/graph.py", "requests") in found and ("sync/routes/smtp.py", "smtplib") in found
    assert {f for f, _ in found if not f.startswith(NETWORK_ADAPTERS)} == set()
