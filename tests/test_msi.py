"""The MSI, built here with `python -m installer.build` and installed under wine like IT would:
msiexec /qn with properties, policy values read back from the registry, the installed `lifeboat`
run (--version, doctor --json shows the policy), a major upgrade that keeps user data, uninstall.

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

import pytest

from desktop.policy_registry import KEY, POLICIES
from installer import wix

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
    "EWSURL": "",  # an empty property writes nothing (kept last: wine joins "P=" with the next word)
}


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/lib/wine/{name}" if Path(f"/usr/lib/wine/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is missing: install the Debian packages in debian-packages.txt (./dev setup)")
    return path


@pytest.fixture(scope="module")
def msis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two MSIs built by the real build command: the current version and a higher one."""
    for tool in ("wixl", "msiinfo", "msibuild"):
        _tool(tool)
    out = tmp_path_factory.mktemp("dist")
    built = {}
    for version in (OLD, NEW):
        proc = subprocess.run(
            [sys.executable, "-m", "installer.build", "--version", version, "--out", str(out)],
            cwd=REPO, capture_output=True, text=True, timeout=1200,
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
    assert props["UpgradeCode"] == "{" + wix.UPGRADE_CODE + "}" and props["STARTATLOGIN"] == "1"
    assert set(wix.secure_properties()) <= set(props["SecureCustomProperties"].split(";"))
    assert not set(PROPS) & set(props), "public policy properties must have no default value"
    suminfo = subprocess.run(["msiinfo", "suminfo", str(msi)], capture_output=True, text=True).stdout
    assert "Template: x64;1033" in suminfo
    conditions = {r["Component"]: r["Condition"] for r in _table(msi, "Component")}
    registry = [r for r in _table(msi, "Registry") if r["Key"] == KEY]
    assert {r["Name"]: r["Value"] for r in registry} == {
        p.name: ("#" if p.kind == "dword" else "") + f"[{p.prop}]" for p in POLICIES
    }
    for r in registry:
        prop = r["Value"].strip("#[]")
        assert r["Root"] == "2" and conditions[r["Component_"]] == f'{prop} OR REMOVE="ALL"'
    (run,) = [r for r in _table(msi, "Registry") if r["Key"] == wix.RUN_KEY]
    assert run["Root"] == "2" and "pythonw.exe" in run["Value"]
    assert conditions[run["Component_"]] == 'STARTATLOGIN="1" OR REMOVE="ALL"'
    (shortcut,) = _table(msi, "Shortcut")
    assert shortcut["Directory_"] == "ProgramMenuFolder"
    assert shortcut["Target"].endswith(r"python\pythonw.exe")
    assert {r["UpgradeCode"] for r in _table(msi, "Upgrade")} == {"{" + wix.UPGRADE_CODE + "}"}
    (purge,) = [r for r in _table(msi, "InstallExecuteSequence") if r["Action"] == "PurgeUserData"]
    assert "REMOVEUSERDATA" in purge["Condition"] and 1500 < int(purge["Sequence"]) < 3500
    files = {r["FileName"].split("|")[-1] for r in _table(msi, "File")}
    assert {"pythonw.exe", "python.exe", "python313.dll", "lifeboat.py", "lifeboat.cmd"} <= files


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

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.wine, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, errors="replace")

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

    def lifeboat(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("cmd", "/c", INSTALLDIR + r"\lifeboat.cmd", *args)

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


def test_install_upgrade_uninstall_under_wine(msis: dict[str, Path], wine: Wine) -> None:
    """Tried: a silent install with every policy property (one empty), reading the registry back,
    running the installed lifeboat (--version, doctor --json), a major upgrade to a higher version
    with user data present, a plain uninstall (keeps user data) and one with REMOVEUSERDATA=1."""
    old, new = (str(msis[v]) for v in (OLD, NEW))
    wine.msiexec("/i", old, *(f"{k}={v}" for k, v in PROPS.items()))

    values = wine.reg_values("HKLM\\" + KEY)
    assert values is not None
    expected = {}
    for p in POLICIES:
        if PROPS[p.prop]:
            expected[p.name] = ("REG_DWORD", hex(int(PROPS[p.prop]))) if p.kind == "dword" \
                else ("REG_SZ", PROPS[p.prop])
    assert values == expected  # EwsUrl absent: its property was empty
    run = wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {}
    launcher = rf'"{INSTALLDIR}\python\pythonw.exe" "{INSTALLDIR}\lifeboat.py"'
    assert run["Lifeboat"][1] == launcher + " run --minimized"
    assert list(wine.prefix.glob("drive_c/**/Start Menu/Programs/Lifeboat.lnk"))
    assert wine.products() == [OLD]

    _remove_wmi(wine)
    version = wine.lifeboat("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lifeboat {OLD}", version.stderr[-2000:]
    doctor = wine.lifeboat("doctor", "--json")
    assert doctor.stdout.strip(), doctor.stderr[-3000:]
    effective = json.loads(doctor.stdout)["settings"]  # {name: {"value", "source"}}, see the README
    for p in POLICIES:
        if PROPS[p.prop]:
            want = int(PROPS[p.prop]) if p.kind == "dword" else PROPS[p.prop]
            assert effective[p.field] == {"value": want, "source": "policy"}, p.field
    assert effective["ews_url"]["source"] != "policy"

    user_data = wine.local_appdata() / "Lifeboat"
    user_data.mkdir(parents=True, exist_ok=True)
    (user_data / "keep-me.txt").write_text("the user's cache")

    # Major upgrade: IT pushes the newer MSI with the same properties.
    wine.msiexec("/i", new, *(f"{k}={v}" for k, v in {**PROPS, "CACHEDAYS": "21"}.items()))
    assert wine.products() == [NEW]
    assert (wine.reg_values("HKLM\\" + KEY) or {})["CacheDays"] == ("REG_DWORD", hex(21))
    _remove_wmi(wine)
    assert wine.lifeboat("--version").stdout.strip() == f"lifeboat {NEW}"
    assert (user_data / "keep-me.txt").exists()

    # Plain uninstall: program files, policy values, Run key and shortcut go; user data stays.
    wine.msiexec("/x", new)
    assert wine.products() == []
    assert not [p for p in wine.drive_c(INSTALLDIR).rglob("*") if p.is_file()]
    assert not wine.reg_values("HKLM\\" + KEY)
    assert "Lifeboat" not in (wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {})
    assert not list(wine.prefix.glob("drive_c/**/Start Menu/Programs/Lifeboat.lnk"))
    assert (user_data / "keep-me.txt").exists()

    # Install without STARTATLOGIN, then uninstall asking for the user data to go too.
    wine.msiexec("/i", new, "STARTATLOGIN=0")
    assert "Lifeboat" not in (wine.reg_values(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run") or {})
    assert not wine.reg_values("HKLM\\" + KEY)  # no properties, no policy
    wine.msiexec("/x", new, "REMOVEUSERDATA=1")
    assert not user_data.exists()
