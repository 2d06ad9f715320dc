"""The MSI, built here with `python -m installer.build` (signed with a throwaway CA and a local RFC 3161
time-stamping server, tests/codesign.py) and installed under wine like IT would: msiexec /qn with
properties, policy values read back from the registry, the installed launchers run (--version, doctor
--json shows the policy), every PE file and the MSI verify against the test CA, a major upgrade that
keeps user data, uninstall.

Wine's WMI crashes CPython 3.13's `platform` module, so the installed _wmi.pyd is removed here
(see FACTS.md); real Windows needs no such step.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from desktop.policy_registry import INSTALL_KEY, KEY, POLICIES
from desktop.window import APP_ID
from installer import build, launcher, sign, wix
from tests import codesign

pytestmark = pytest.mark.msi

REPO = Path(__file__).resolve().parents[1]
OLD, NEW = "0.1.0", "0.1.1"
DB_KEY = "ab" * 32
INSTALLDIR = r"C:\Program Files\Lifeboat"
PROPS = {
    "TENANTID": "contoso.com", "CLIENTID": "11111111-2222-3333-4444-555555555555",
    "AUTHORITYURL": "https://login.contoso.test/{tenant}", "GRAPHURL": "https://graph.contoso.test/v1.0",
    "BACKUPSMTPHOST": "relay.contoso.com", "BACKUPSMTPPORT": "2525", "BACKUPSMTPSECURITY": "tls",
    "BACKUPSENDER": "outage@contoso.com", "CACHEDAYS": "14", "CACHEMAXMB": "512", "FAILOVERAFTER": "45",
    "RECOVERAFTER": "60", "REFERENCEURL": "https://intranet.contoso.com/", "FORCEMODE": "continuity",
    "ALLOWDEVICECODE": "no",
    # .test never resolves; the missing CA file stops doctor's network check before any connection
    "CAFILE": r"C:\ProgramData\Contoso\inspection-root.pem", "PROXY": "http://proxy.contoso.test:8080",
    "PROXYPACURL": "http://pac.contoso.test/proxy.pac",  # never fetched: PROXY wins, and .test never resolves
    "EWSURL": "",  # an empty property writes nothing (kept last: wine joins "P=" with the next word)
}


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/lib/wine/{name}" if Path(f"/usr/lib/wine/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is missing: install the Debian packages in debian-packages.txt (./dev setup)")
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> codesign.TestPki:
    return codesign.make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def msis(tmp_path_factory: pytest.TempPathFactory, pki: codesign.TestPki) -> dict[str, Path]:
    """Two MSIs built and signed by the real build command: the current version and a higher one."""
    for tool in ("wixl", "msiinfo", "msibuild", "osslsigncode", "x86_64-w64-mingw32-gcc"):
        _tool(tool)
    out = tmp_path_factory.mktemp("dist")
    built = {}
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # the TSA is on loopback
    for version in (OLD, NEW):
        # the second build precompiles with the runtime's own python.exe under wine, as on a machine
        # without a CPython 3.13 (plain Debian 12); the first with a native one where there is one
        wine = {"LIFEBOAT_PYTHON313": "wine", "WINEDEBUG": "-all"} if version == NEW else {}
        with codesign.timestamp_server(pki) as tsa:
            proc = subprocess.run(
                [sys.executable, "-m", "installer.build", "--version", version, "--out", str(out),
                 "--sign-cert", str(pki.cert), "--sign-key", str(pki.key), "--timestamp-url", tsa],
                cwd=REPO, capture_output=True, text=True, timeout=1200, env={**env, **wine},
            )
        assert proc.returncode == 0, proc.stderr[-3000:]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"built {report}")  # size and build time, shown with pytest -s
        built[version] = Path(report["msi"])
        assert built[version] == out / f"Lifeboat-{version}-x64.msi"
    return built


def _table(msi: Path, table: str) -> list[dict[str, str]]:
    text = subprocess.run(["msiinfo", "export", str(msi), table], capture_output=True, text=True,
                          check=True).stdout.replace("\r\n", "\n")
    head, _types, _key, *rows = text.rstrip("\n").split("\n")
    cols = head.split("\t")
    return [dict(zip(cols, r.split("\t"), strict=False)) for r in rows]


def test_msi_tables(msis: dict[str, Path]) -> None:
    """Tried: the built MSI's tables: per-machine, version, upgrade code, policy registry rows with
    their property conditions, the Run key and its switch, the Start menu shortcut, the purge action."""
    msi = msis[OLD]
    props = {r["Property"]: r["Value"] for r in _table(msi, "Property")}
    assert props["ALLUSERS"] == "1" and props["ProductVersion"] == OLD
    assert props["UpgradeCode"] == "{" + wix.UPGRADE_CODE + "}" and "STARTATLOGIN" not in props
    assert set(wix.secure_properties()) <= set(props["SecureCustomProperties"].split(";"))
    assert not set(PROPS) & set(props), "public policy properties must have no default value"
    suminfo = subprocess.run(["msiinfo", "suminfo", str(msi)], capture_output=True, text=True).stdout
    assert "Template: x64;1033" in suminfo
    conditions = {r["Component"]: r["Condition"] for r in _table(msi, "Component")}
    assert not [r for r in _table(msi, "Registry") if "policies" in r["Key"].lower()]  # Group Policy's
    registry = [r for r in _table(msi, "Registry") if r["Key"] == INSTALL_KEY]
    remembered = wix.remembered_properties()
    assert {r["Name"]: r["Value"] for r in registry} == {
        name: f"[{prop}]" for prop, name in remembered.items()}
    for r in registry:
        prop = r["Value"].strip("[]")
        if prop != "STARTATLOGIN":
            assert r["Root"] == "2" and conditions[r["Component_"]] == f'{prop} OR REMOVE="ALL"'
    # an upgrade reads them back: AppSearch + RegLocator (HKLM = 2, raw value + 64-bit view = 2 + 16)
    locators = {r["Signature_"]: r for r in _table(msi, "RegLocator")}
    searches = {r["Property"]: locators[r["Signature_"]] for r in _table(msi, "AppSearch")}
    assert {prop: (r["Root"], r["Key"], r["Name"], r["Type"]) for prop, r in searches.items()} == {
        prop: ("2", INSTALL_KEY, name, "18") for prop, name in remembered.items()}
    execute = {r["Action"]: int(r["Sequence"]) for r in _table(msi, "InstallExecuteSequence")}
    assert execute["InstallValidate"] < execute["RemoveExistingProducts"] < execute["InstallInitialize"]
    for sequence in ("InstallExecuteSequence", "InstallUISequence"):
        order = {r["Action"]: int(r["Sequence"]) for r in _table(msi, sequence)}
        for prop in remembered:
            assert order[f"SaveCmd_{prop}"] < order["AppSearch"] < order[f"RestoreCmd_{prop}"], sequence
    (run,) = [r for r in _table(msi, "Registry") if r["Key"] == wix.RUN_KEY]
    assert run["Root"] == "2" and run["Value"] == '"[INSTALLDIR]Lifeboat.exe" run --minimized'
    assert conditions[run["Component_"]] == 'STARTATLOGIN="1" OR REMOVE="ALL"'
    source = {r["Name"]: r for r in _table(msi, "Registry") if r["Key"].rstrip("\\") == wix.EVENT_SOURCE_KEY}
    assert {n: (r["Root"], r["Value"]) for n, r in source.items()} == {
        "EventMessageFile": ("2", "#%[INSTALLDIR]Lifeboat.exe"),  # REG_EXPAND_SZ: the launcher's messages
        "TypesSupported": ("2", "#7"), "-": ("2", "")}  # "-": the key goes at uninstall
    assert {r["Component_"] for r in source.values()} == {"EventSource"}
    (shortcut,) = _table(msi, "Shortcut")
    assert shortcut["Directory_"] == "ProgramMenuFolder"
    (aumid,) = _table(msi, "MsiShortcutProperty")  # the app's own AppUserModelID on its shortcut
    assert (aumid["Shortcut_"], aumid["PropertyKey"], aumid["PropVariantValue"]) == (
        shortcut["Shortcut"], wix.PKEY_APP_USER_MODEL_ID, APP_ID)
    assert shortcut["Target"] == "[INSTALLDIR]Lifeboat.exe" and shortcut["Arguments"] == "run"
    assert {r["UpgradeCode"] for r in _table(msi, "Upgrade")} == {"{" + wix.UPGRADE_CODE + "}"}
    (purge,) = [r for r in _table(msi, "InstallExecuteSequence") if r["Action"] == "PurgeUserData"]
    assert "REMOVEUSERDATA" in purge["Condition"] and 1500 < int(purge["Sequence"]) < 3500
    (action,) = [r for r in _table(msi, "CustomAction") if r["Action"] == "PurgeUserData"]
    launcher = {r["File"] for r in _table(msi, "File") if r["FileName"].split("|")[-1] == "Lifeboat.exe"}
    assert action["Source"] in launcher and action["Target"] == "--msi-purge-user-data"
    files = {r["FileName"].split("|")[-1] for r in _table(msi, "File")}
    assert {"Lifeboat.exe", "lifeboat-cli.exe", "python313.dll", "lifeboat_launcher.py"} <= files
    assert not {"python.exe", "pythonw.exe", "lifeboat.py", "lifeboat.cmd"} & files


def _pe_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and sign.is_pe(p))


# Publishers whose own signature the build keeps on their files (it signs only unsigned PE files):
# the PSF (CPython's DLLs and .pyd, signed through Microsoft's Trusted Signing) and Microsoft (the
# VC++ runtime, WebView2). Their roots are not in Debian's bundle, so here only their digests are checked.
UPSTREAM_SIGNERS = ("/O=Python Software Foundation/", "/O=Microsoft Corporation/")


def _assert_every_pe_verifies(root: Path, pki: codesign.TestPki) -> tuple[int, int]:
    """Every PE file under root: ours verify against the test CA with a timestamp; upstream-signed ones
    are unchanged since their publisher signed them. Returns (ours, upstream) counts."""
    ours = upstream = 0
    for path in _pe_files(root):
        out = codesign.verify(path, pki)
        text = out.stdout + out.stderr
        subjects = codesign.signer_subjects(text)
        assert subjects, f"{path.relative_to(root)} is not signed"
        if subjects[0].endswith("/CN=" + codesign.SIGNER_CN):
            assert out.returncode == 0 and "Signature verification: ok" in text, (path, text[-1500:])
            assert "Timestamp time:" in text, f"{path.name}: no RFC 3161 timestamp"
            ours += 1
        else:
            assert any(org in subjects[0] for org in UPSTREAM_SIGNERS), (path, subjects)
            assert codesign.digest_intact(text), f"{path.name}: changed after its publisher signed it"
            upstream += 1
    return ours, upstream


def test_msi_payload_is_signed_lean_and_precompiled(msis: dict[str, Path], pki: codesign.TestPki,
                                                    tmp_path: Path) -> None:
    """Tried: the MSI and every PE file inside it against the throwaway CA (a file left unsigned, or
    signed without a timestamp, fails); the launchers' version resource, icon and manifest; no
    python.exe, pip, simulator, demo or test-only library; every .py file has an unchecked-hash .pyc
    of the runtime's own bytecode version (a stale or foreign .pyc would be recompiled at each start)."""
    msi = msis[OLD]
    out = codesign.verify(msi, pki)
    assert out.returncode == 0 and "Timestamp time:" in out.stdout, out.stdout[-2000:] + out.stderr[-1000:]
    subprocess.run(["msiextract", "-C", str(tmp_path), str(msi)], check=True, capture_output=True)
    (root,) = [p for p in tmp_path.rglob("Lifeboat.exe")]
    root = root.parent
    ours, upstream = _assert_every_pe_verifies(root, pki)
    assert ours >= 20 and upstream >= 20, (ours, upstream)  # the launchers and the wheels' .pyd are ours
    print(f"PE files: {ours} signed by the build, {upstream} kept their publisher's signature")

    for exe, subsystem in (("Lifeboat.exe", "(Windows GUI)"), ("lifeboat-cli.exe", "(Windows CUI)")):
        rc = subprocess.run(["x86_64-w64-mingw32-windres", "-i", str(root / exe), "-O", "rc"],
                            capture_output=True, text=True, errors="replace", check=True).stdout
        assert f'VALUE "OriginalFilename", "{exe}"' in rc and f'VALUE "FileVersion", "{OLD}"' in rc
        assert f"FILEVERSION {OLD.replace('.', ',')},0" in rc.replace(", ", ",")
        assert "ICON" in rc and "asInvoker" in rc and "longPathAware" in rc
        # the Event Log's message table: every event ID maps to the one insertion string
        dump = rc.split("RT_MESSAGETABLE", 1)[1]
        messages = {int(i, 16): text.strip() for i, text in re.findall(r"MessageId = 0x(\w+)\n\s*(.*)", dump)}
        assert set(messages) == set(launcher.EVENT_IDS) and set(messages.values()) == {r"%1\n\000"}
        head = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", str(root / exe)], capture_output=True,
                              text=True, check=True).stdout
        assert subsystem in head and "python" not in head.lower()  # python313.dll is loaded, not linked

    names = {p.name.lower() for p in root.rglob("*")}
    assert not {"python.exe", "pythonw.exe", "pip", "simulator", "aiosmtpd", "o365", "exchangelib"} & names
    site = root / "python" / "Lib" / "site-packages"
    assert not (site / "desktop" / "demo.py").exists() and (site / "desktop" / "cli.py").exists()
    _assert_precompiled(root)
    # the higher version was precompiled by the runtime's own python.exe under wine (no CPython 3.13)
    subprocess.run(["msiextract", "-C", str(tmp_path / "new"), str(msis[NEW])], check=True,
                   capture_output=True)
    (exe,) = [p for p in (tmp_path / "new").rglob("Lifeboat.exe")]
    _assert_precompiled(exe.parent)
    assert not [p for p in exe.parent.rglob("*") if p.name.lower() in ("python.exe", "pythonw.exe")]


def _assert_precompiled(root: Path) -> None:
    """Every .py file of the payload has an unchecked-hash .pyc of the runtime's own bytecode version."""
    magic = build._zip_magic(root / "python")
    sources = list((root / "python" / "Lib").rglob("*.py"))
    assert len(sources) > 500
    for src in sources:
        pyc = src.parent / "__pycache__" / f"{src.stem}.cpython-313.pyc"
        head = pyc.read_bytes()[:8] if pyc.exists() else b""
        assert head[:4] == magic and head[4:8] == b"\x01\0\0\0", f"{src.relative_to(root)}: no usable .pyc"


class Wine:
    """A throwaway wine prefix; every call has a timeout as a safety net against hangs."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = prefix
        self.env = {**os.environ, "WINEPREFIX": str(prefix), "WINEDEBUG": "-all",
                    "WINEDLLOVERRIDES": "mscoree,mshtml=", "LIFEBOAT_DB_KEY": DB_KEY}
        for var in ("DISPLAY", "LIFEBOAT_HOME", "LIFEBOAT_CONFIG", "LIFEBOAT_POLICY"):
            self.env.pop(var, None)
        self.wine = _tool("wine64") if shutil.which("wine64") or Path("/usr/lib/wine/wine64").exists() \
            else _tool("wine")

    def run(self, *args: str, timeout: float = 600, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.wine, *args], env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout, errors="replace", stdin=subprocess.DEVNULL, cwd=cwd)

    def msiexec(self, *args: str) -> None:
        log = self.prefix / "msiexec.log"
        proc = self.run("msiexec", *args, "/qn", "/l*v", r"Z:" + str(log).replace("/", "\\"))
        if proc.returncode != 0:
            detail = log.read_text(errors="replace")[-3000:] if log.exists() else proc.stderr
            raise AssertionError(f"msiexec {args[:2]} -> {proc.returncode}\n{detail}")

    def reg_values(self, key: str) -> dict[str, tuple[str, str]] | None:
        proc = self.run("reg", "query", key, timeout=120)
        if proc.returncode != 0:
            return None
        out = {}
        for line in proc.stdout.splitlines():
            m = re.match(r"^\s{4}(\S+)\s{4}(REG_\w+)\s{4}(.*)$", line)
            if m:
                out[m.group(1)] = (m.group(2), m.group(3).strip())
        return out

    def lifeboat(self, *args: str, exe: str = "lifeboat-cli.exe",
                 **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(INSTALLDIR + "\\" + exe, *args, **kw)

    def drive_c(self, windows_path: str) -> Path:
        return self.prefix / "drive_c" / windows_path.removeprefix("C:\\").replace("\\", "/")

    def local_appdata(self) -> Path:
        (users,) = [p for p in (self.prefix / "drive_c" / "users").iterdir() if p.name.lower() != "public"]
        return users / "AppData" / "Local"

    def products(self) -> list[str]:
        uninstall = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"
        proc = self.run("reg", "query", uninstall, "/s", timeout=120)
        versions, current = [], None
        for line in proc.stdout.splitlines():
            if line.startswith("HKEY_"):
                current = None
            m = re.match(r"^\s+(DisplayName|DisplayVersion)\s+REG_SZ\s+(.*)$", line)
            if m and m.group(1) == "DisplayName":
                current = m.group(2).strip()
            elif m and current == "Lifeboat":
                versions.append(m.group(2).strip())
        return versions


@pytest.fixture
def wine(tmp_path: Path) -> Iterator[Wine]:
    w = Wine(tmp_path / "prefix")
    boot = w.run("wineboot", "-i", timeout=300)
    assert boot.returncode == 0, boot.stderr[-2000:]
    yield w
    server = Path(w.wine).with_name("wineserver")  # ends this prefix's wine processes
    if server.exists():
        subprocess.run([str(server), "-k"], env=w.env, capture_output=True, timeout=60, check=False)


def _remove_wmi(w: Wine) -> None:
    w.drive_c(INSTALLDIR + r"\python\_wmi.pyd").unlink()


def _launchers_run_only_lifeboat(wine: Wine, planted: Path) -> None:
    """The launchers are not a general interpreter: Python options among the arguments are Lifeboat's
    arguments (refused), and modules planted in the current folder or on PYTHONPATH are never run."""
    marker = planted / "ran.txt"
    windows_marker = "Z:" + str(marker).replace("/", "\\")
    code = f"open({windows_marker!r}, 'w').write('planted code ran')\n"
    for pkg in ("desktop", "lifeboat_launcher", "sitecustomize"):
        (planted / pkg).mkdir(parents=True, exist_ok=True)
        (planted / pkg / "__init__.py").write_text(code)
    (planted / "lifeboat_launcher.py").write_text(code)
    for exe in ("lifeboat-cli.exe", "Lifeboat.exe"):
        interpreted = wine.lifeboat("-c", f"open({windows_marker!r}, 'w')", exe=exe)
        assert interpreted.returncode == 2, interpreted  # argparse's usage error, nothing run
        planted_run = wine.lifeboat("--version", exe=exe, cwd=planted,
                                    env={"PYTHONPATH": "Z:" + str(planted).replace("/", "\\"),
                                         "PYTHONSTARTUP": "Z:" + str(planted / "lifeboat_launcher.py")})
        assert planted_run.returncode == 0 and planted_run.stdout.strip().startswith("lifeboat "), planted_run
    assert not marker.exists(), "code planted beside the user ran inside Lifeboat"


def test_install_upgrade_uninstall_under_wine(msis: dict[str, Path], wine: Wine,
                                              pki: codesign.TestPki) -> None:
    """Tried: a silent install with every policy property (one empty), reading the registry back,
    every PE file of the installed folder against the test CA, running both installed launchers
    (--version, doctor --json) without them writing a single .pyc, a major upgrade to a higher
    version that repeats none of the properties but one (with user data present: every value and the
    data are kept, the repeated one takes its new value), a refused downgrade (1603), a plain
    uninstall (keeps user data), an install with STARTATLOGIN=0 that an upgrade without it keeps, and
    an uninstall with REMOVEUSERDATA=1. The MSI never writes under SOFTWARE\\Policies (Group Policy's)."""
    old, new = (str(msis[v]) for v in (OLD, NEW))
    wine.msiexec("/i", old, *(f"{k}={v}" for k, v in PROPS.items()))

    expected = {p.name: ("REG_SZ", PROPS[p.prop]) for p in POLICIES if PROPS[p.prop]}
    expected["StartAtLogin"] = ("REG_SZ", "1")
    assert wine.reg_values("HKLM\\" + INSTALL_KEY) == expected  # EwsUrl absent: its property was empty
    assert wine.reg_values("HKLM\\" + KEY) is None
    run = wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {}
    assert run["Lifeboat"][1] == rf'"{INSTALLDIR}\Lifeboat.exe" run --minimized'
    assert list(wine.prefix.glob("drive_c/**/Start Menu/Programs/Lifeboat.lnk"))
    assert wine.products() == [OLD]
    event_source = "HKLM\\" + wix.EVENT_SOURCE_KEY
    assert wine.reg_values(event_source) == {
        "EventMessageFile": ("REG_EXPAND_SZ", INSTALLDIR + "\\Lifeboat.exe"),
        "TypesSupported": ("REG_DWORD", "0x7")}

    installed = wine.drive_c(INSTALLDIR)
    _assert_every_pe_verifies(installed, pki)
    _remove_wmi(wine)
    before = {p: p.stat().st_mtime_ns for p in installed.rglob("*")}
    version = wine.lifeboat("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lifeboat {OLD}", version.stderr[-2000:]
    gui = wine.lifeboat("--version", exe="Lifeboat.exe")  # GUI subsystem: wine still passes our stdout
    assert gui.returncode == 0 and gui.stdout.strip() == f"lifeboat {OLD}", gui.stderr[-2000:]
    doctor = wine.lifeboat("doctor", "--json")
    assert doctor.stdout.strip(), doctor.stderr[-3000:]
    effective = json.loads(doctor.stdout)["settings"]  # {name: {"value", "source"}}, see the README
    for p in POLICIES:
        if PROPS[p.prop]:
            want = int(PROPS[p.prop]) if p.kind == "dword" else PROPS[p.prop]
            assert effective[p.field] == {"value": want, "source": "policy"}, p.field
    assert effective["ews_url"]["source"] != "policy"
    _launchers_run_only_lifeboat(wine, wine.prefix.parent / "planted")
    after = {p: p.stat().st_mtime_ns for p in installed.rglob("*")}
    assert after == before, f"the app wrote into its install folder: {sorted(set(after) ^ set(before))[:5]}"

    user_data = wine.local_appdata() / "Lifeboat"
    user_data.mkdir(parents=True, exist_ok=True)
    (user_data / "keep-me.txt").write_text("the user's cache")

    # Major upgrade: IT pushes the newer MSI with one property changed and the others left out.
    wine.msiexec("/i", new, "CACHEDAYS=21")
    assert wine.products() == [NEW]
    assert wine.reg_values("HKLM\\" + INSTALL_KEY) == {**expected, "CacheDays": ("REG_SZ", "21")}
    assert wine.reg_values("HKLM\\" + KEY) is None
    run = wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {}
    assert run["Lifeboat"][1] == rf'"{INSTALLDIR}\Lifeboat.exe" run --minimized'
    _remove_wmi(wine)
    assert wine.lifeboat("--version").stdout.strip() == f"lifeboat {NEW}"
    effective = json.loads(wine.lifeboat("doctor", "--json").stdout)["settings"]
    for p in POLICIES:
        if PROPS[p.prop]:
            value = "21" if p.prop == "CACHEDAYS" else PROPS[p.prop]
            want = int(value) if p.kind == "dword" else value
            assert effective[p.field] == {"value": want, "source": "policy"}, p.field
    assert (user_data / "keep-me.txt").exists()

    # A downgrade is refused with 1603 (the MSI's launch condition), and the newer version stays.
    refused = wine.run("msiexec", "/i", old, "/qn")
    assert refused.returncode == 1603 % 256, refused.returncode  # a Unix exit status keeps the low byte
    assert wine.products() == [NEW]

    # Plain uninstall: program files, policy values, Run key and shortcut go; user data stays.
    wine.msiexec("/x", new)
    assert wine.products() == []
    assert not [p for p in wine.drive_c(INSTALLDIR).rglob("*") if p.is_file()]
    assert not wine.reg_values("HKLM\\" + INSTALL_KEY)
    assert wine.reg_values(event_source) is None  # the source's key is gone, not left empty
    assert "Lifeboat" not in (wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {})
    assert not list(wine.prefix.glob("drive_c/**/Start Menu/Programs/Lifeboat.lnk"))
    assert (user_data / "keep-me.txt").exists()

    # Install without start at sign-in and upgrade without saying it again: it stays off.
    wine.msiexec("/i", old, "STARTATLOGIN=0")
    assert wine.reg_values("HKLM\\" + INSTALL_KEY) == {"StartAtLogin": ("REG_SZ", "0")}  # no properties
    wine.msiexec("/i", new)
    assert wine.products() == [NEW]
    assert wine.reg_values("HKLM\\" + INSTALL_KEY) == {"StartAtLogin": ("REG_SZ", "0")}
    assert "Lifeboat" not in (wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {})
    # then uninstall asking for the user data to go too
    wine.msiexec("/x", new, "REMOVEUSERDATA=1")
    assert not user_data.exists()
