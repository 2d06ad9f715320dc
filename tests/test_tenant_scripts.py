"""The tenant registration scripts (installer/tenant/register-app.sh and .ps1) and the operations guide
against what the code requests: one source of truth (desktop.auth's SCOPES and GRAPH_PERMISSION_IDS).

Tried: a permission the code requests that a script forgets, a script granting one more (or a typo in a
GUID), a redirect URI missing, the shell script not parsing (bash -n), the PowerShell script with an
unbalanced bracket or quote (no PowerShell parser is installable here: a small tokenizer checks it).
"""

from __future__ import annotations

import inspect
import re
import subprocess
from pathlib import Path

import msal

from desktop.auth import (
    BROWSER_REDIRECT_URI,
    GRAPH_APP_ID,
    GRAPH_PERMISSION_IDS,
    MSAL_SCOPES,
    SCOPES,
    broker_redirect_uri,
)

REPO = Path(__file__).resolve().parents[1]
SH = REPO / "installer" / "tenant" / "register-app.sh"
PS1 = REPO / "installer" / "tenant" / "register-app.ps1"
OPERATIONS = REPO / "docs" / "operations.md"
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_the_table_is_what_msal_requests() -> None:
    """Tried: the permission table against what a sign-in asks for: Lifeboat's scopes plus the ones msal
    adds to every request (read from msal itself), each once."""
    reserved = inspect.signature(msal.ClientApplication._decorate_scope).parameters["reserved_scope"].default
    assert set(MSAL_SCOPES) == set(reserved)
    assert set(GRAPH_PERMISSION_IDS) == set(SCOPES) | set(MSAL_SCOPES)
    assert len(set(GRAPH_PERMISSION_IDS.values())) == len(GRAPH_PERMISSION_IDS)


def test_shell_script_parses_and_grants_exactly_the_table() -> None:
    """Tried: `bash -n` on the Azure CLI script; its permission lines (`<id>=Scope  # <name>`) against the
    table; its redirect URIs; that it turns on public client flows and asks for admin consent."""
    subprocess.run(["bash", "-n", str(SH)], check=True)
    text = SH.read_text()
    granted = dict(
        (name, guid) for guid, name in re.findall(r'"(' + GUID.pattern + r')=Scope"\s*#\s*(\S+)', text))
    assert granted == GRAPH_PERMISSION_IDS
    assert set(GUID.findall(text)) == {*GRAPH_PERMISSION_IDS.values(), GRAPH_APP_ID}
    assert f'"{BROWSER_REDIRECT_URI}"' in text and broker_redirect_uri("$app_id") in text
    assert "--is-fallback-public-client true" in text and "permission admin-consent" in text
    assert "=Role" not in text  # delegated only: never an application permission


def test_powershell_script_grants_exactly_the_table() -> None:
    """Tried: the Microsoft Graph PowerShell script's permission map, GUIDs, redirect URIs, public client
    flows and organisation-wide consent against the same table."""
    text = PS1.read_text()
    granted = dict(re.findall(r'^\s*"([\w.]+)"\s*=\s*"(' + GUID.pattern + ')"', text, flags=re.M))
    assert granted == GRAPH_PERMISSION_IDS
    assert set(GUID.findall(text)) == {*GRAPH_PERMISSION_IDS.values(), GRAPH_APP_ID}
    assert f'"{BROWSER_REDIRECT_URI}"' in text and broker_redirect_uri("$($App.AppId)") in text
    assert "-IsFallbackPublicClient:$true" in text and '-ConsentType "AllPrincipals"' in text
    assert 'Type = "Scope"' in text and '"Role"' not in text
    assert_balanced(text)


def test_the_operations_guide_names_the_same_permissions() -> None:
    """Tried: docs/operations.md's permission table (IT clicks from it) against the same table."""
    text = OPERATIONS.read_text()
    for name, guid in GRAPH_PERMISSION_IDS.items():
        assert re.search(rf"\|\s*`?{re.escape(name)}`?\s*\|[^\n]*{guid}", text), name
    assert BROWSER_REDIRECT_URI in text and broker_redirect_uri("<client id>") in text
    assert "Allow public client flows" in text


def assert_balanced(ps: str) -> None:
    """PowerShell's brackets and quotes pair up: strings ('...' and "..." with backtick escapes), comments
    (# and <# #>) are skipped; (), {}, [] must nest. Not a parser; it catches a dropped bracket or quote."""
    stack: list[str] = []
    pairs = {")": "(", "}": "{", "]": "["}
    i, line = 0, 1
    while i < len(ps):
        c = ps[i]
        if c == "\n":
            line += 1
        if ps.startswith("<#", i):
            end = ps.find("#>", i)
            assert end > 0, f"unclosed block comment at line {line}"
            line += ps.count("\n", i, end)
            i = end + 2
            continue
        if c == "#":
            i = ps.find("\n", i)
            i = len(ps) if i < 0 else i
            continue
        if c in "'\"":
            j = i + 1
            while j < len(ps) and ps[j] != c:
                j += 2 if (c == '"' and ps[j] == "`") else 1
            assert j < len(ps), f"unclosed {c} string at line {line}"
            line += ps.count("\n", i, j)
            i = j + 1
            continue
        if c == "`":  # escape / line continuation
            i += 2
            continue
        if c in "({[":
            stack.append(c)
        elif c in ")}]":
            assert stack and stack[-1] == pairs[c], f"unbalanced {c} at line {line}"
            stack.pop()
        i += 1
    assert not stack, f"unclosed {stack}"


def test_the_balance_check_catches_a_dropped_bracket_or_quote() -> None:
    """Tried: the checker itself on the real script with one closing brace, then one quote, removed."""
    text = PS1.read_text()
    assert_balanced(text)
    broken_brace = text.replace("Out-Null\n}", "Out-Null\n", 1)
    broken_quote = text.replace('-SignInAudience "AzureADMyOrg"', '-SignInAudience "AzureADMyOrg', 1)
    for broken in (broken_brace, broken_quote):
        assert broken != text
        try:
            assert_balanced(broken)
        except AssertionError:
            continue
        raise AssertionError("a broken script passed the balance check")


AZ_STUB = """#!{py}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["AZ_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["account", "show"]:
    print("72f988bf-86f1-41af-91ab-2d7cd011db47")
elif args[:3] == ["ad", "app", "list"]:
    print("")
elif args[:3] == ["ad", "app", "create"]:
    print("5e3a1d2c-0b4f-4c6d-9e8a-7f1b2c3d4e5f")
elif args[:3] == ["ad", "sp", "show"]:
    sys.exit(3)  # no service principal yet
"""


def test_shell_script_runs_the_az_commands_it_should(tmp_path: Path) -> None:
    """Tried: the whole Azure CLI script under bash with `az` answered by a stub that records every call
    (a new tenant: no app yet). The calls must create a single-tenant public client, set both redirect
    URIs with the new client id, add exactly the table's delegated permissions, create the service
    principal, grant admin consent, and print the TENANTID / CLIENTID to use. Where the real Azure CLI
    is installed (`az` on PATH), each recorded call is also given to it without a sign-in: it must stop
    at "az login", never at an argument it does not know."""
    import json
    import os
    import shutil
    import sys

    stub_dir = tmp_path / "bin"
    stub_dir.mkdir()
    (stub_dir / "az").write_text(AZ_STUB.format(py=sys.executable))
    (stub_dir / "az").chmod(0o755)
    log = tmp_path / "az.log"
    real_az = shutil.which("az")
    env = {**os.environ, "PATH": f"{stub_dir}:{os.environ['PATH']}", "AZ_LOG": str(log)}
    run = subprocess.run(["bash", str(SH), "Lifeboat pilot"], env=env, capture_output=True, text=True,
                         check=True)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    app = "5e3a1d2c-0b4f-4c6d-9e8a-7f1b2c3d4e5f"
    assert [c[:3] for c in calls] == [["account", "show", "--query"], ["ad", "app", "list"],
                                      ["ad", "app", "create"], ["ad", "app", "update"],
                                      ["ad", "app", "permission"], ["ad", "sp", "show"],
                                      ["ad", "sp", "create"], ["ad", "app", "permission"]]
    create, update, add, consent = calls[2], calls[3], calls[4], calls[7]
    assert create[create.index("--display-name") + 1] == "Lifeboat pilot"
    assert create[create.index("--sign-in-audience") + 1] == "AzureADMyOrg"
    assert create[create.index("--is-fallback-public-client") + 1] == "true"
    uris = update[update.index("--public-client-redirect-uris") + 1:]
    assert uris == [BROWSER_REDIRECT_URI, broker_redirect_uri(app)]
    assert add[3] == "add" and add[add.index("--api") + 1] == GRAPH_APP_ID
    granted = add[add.index("--api-permissions") + 1:add.index("--only-show-errors")]
    assert sorted(granted) == sorted(f"{guid}=Scope" for guid in GRAPH_PERMISSION_IDS.values())
    assert consent[3] == "admin-consent" and consent[consent.index("--id") + 1] == app
    assert f"CLIENTID={app}" in run.stdout and "TENANTID=72f988bf-86f1-41af-91ab-2d7cd011db47" in run.stdout
    if real_az is not None:
        config = tmp_path / "azure"  # an empty Azure CLI profile: nobody is signed in
        for call in calls:
            real = subprocess.run([real_az, *call], env={**os.environ, "AZURE_CONFIG_DIR": str(config)},
                                  capture_output=True, text=True)
            assert "unrecognized arguments" not in real.stderr, (call, real.stderr)
            assert "az login" in real.stderr, (call, real.stderr)
