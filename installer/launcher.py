"""Lifeboat's own Windows binaries, built on Linux with mingw-w64: `Lifeboat.exe` (GUI subsystem; the
Start menu shortcut and the Run key start it) and `lifeboat-cli.exe` (console; `lifeboat-cli doctor`).

Two names, not `Lifeboat.exe` and `lifeboat.exe`: Windows file systems ignore case, so those would be
one file. Each carries a version resource (the MSI's version; OriginalFilename is what AppLocker and App
Control publisher rules match), the tray's icon and a manifest (asInvoker, Windows 10/11, long paths,
UTF-8). Both load python\\python313.dll themselves (installer/launcher/launcher.c): no python.exe ships.

`Lifeboat.exe` is also the EventMessageFile of the Application-log source "Lifeboat" (installer/wix.py):
both launchers carry a message table (windmc) that maps every event ID in EVENT_IDS to "%1", the one
insertion string desktop/eventlog.py writes, so Event Viewer shows the text instead of "The description
for Event ID ... cannot be found".
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sync.errors import LifeboatError

HERE = Path(__file__).resolve().parent / "launcher"
GCC = "x86_64-w64-mingw32-gcc"
WINDRES = "x86_64-w64-mingw32-windres"
WINDMC = "x86_64-w64-mingw32-windmc"
# The event IDs the message table answers for (desktop/eventlog.py uses 1000-1099 today); a range, so
# a new ID needs no new launcher. Each costs about 12 bytes.
EVENT_IDS = range(1, 2048)


@dataclass(frozen=True)
class Launcher:
    name: str  # file name in INSTALLDIR
    description: str  # FileDescription: what Task Manager and the SmartScreen prompt show
    gui: bool  # GUI subsystem (no console window) or console


GUI = Launcher("Lifeboat.exe", "Lifeboat", gui=True)
CLI = Launcher("lifeboat-cli.exe", "Lifeboat command line", gui=False)
LAUNCHERS = (GUI, CLI)


class LauncherBuildError(LifeboatError):
    pass


def _rc_string(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def messages_mc(ids: range = EVENT_IDS) -> str:
    """windmc source: every event ID's message is its first insertion string."""
    head = "MessageIdTypedef=DWORD\nLanguageNames=(English=0x409:MSG00409)\n\n"
    return head + "".join(f"MessageId={i}\nLanguage=English\n%1\n.\n\n" for i in ids)


def version_rc(launcher: Launcher, version: str, icon: Path, manifest: Path,
               messages: Path | None = None) -> str:
    """The resource script: icon, manifest (RT_MANIFEST 1), VERSIONINFO with the MSI's version and the
    event message table (RT_MESSAGETABLE 11) when `messages` (windmc's .bin) is given."""
    parts = [int(x) for x in version.split(".")]
    if len(parts) != 3:
        raise LauncherBuildError(f"version {version!r} must be X.Y.Z")
    numeric = ",".join(str(p) for p in [*parts, 0])
    strings = {
        "CompanyName": "Lifeboat", "FileDescription": launcher.description, "FileVersion": version,
        "InternalName": launcher.name.removesuffix(".exe"), "OriginalFilename": launcher.name,
        "ProductName": "Lifeboat", "ProductVersion": version,
        "LegalCopyright": "MIT licence",
    }
    values = "\n".join(f"      VALUE {_rc_string(k)}, {_rc_string(v)}" for k, v in strings.items())
    table = f"1 11 {_rc_string(messages.as_posix())}\n" if messages else ""
    return f"""#include <winver.h>
1 ICON {_rc_string(icon.as_posix())}
1 24 {_rc_string(manifest.as_posix())}
{table}1 VERSIONINFO
FILEVERSION {numeric}
PRODUCTVERSION {numeric}
FILEFLAGSMASK 0x3fL
FILEFLAGS 0x0L
FILEOS VOS_NT_WINDOWS32
FILETYPE VFT_APP
FILESUBTYPE 0x0L
BEGIN
  BLOCK "StringFileInfo"
  BEGIN
    BLOCK "040904B0"
    BEGIN
{values}
    END
  END
  BLOCK "VarFileInfo"
  BEGIN
    VALUE "Translation", 0x409, 1200
  END
END
"""


def write_icon(path: Path) -> None:
    """The tray's normal-state badge (desktop.tray.icon_for) as a multi-size .ico."""
    from desktop.tray import icon_for

    icon_for("normal", 256).save(path, format="ICO", sizes=[(16, 16), (32, 32), (48, 48), (256, 256)])


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise LauncherBuildError(f"`{' '.join(cmd[:3])} ...` failed ({proc.returncode}):\n"
                                 f"{proc.stderr[-3000:]}")


def build(version: str, out: Path, work: Path) -> list[Path]:
    """Compile both launchers into `out`; returns their paths."""
    for tool in (GCC, WINDRES, WINDMC):
        if not shutil.which(tool):
            raise LauncherBuildError(f"{tool} not found",
                                     fix="apt-get install gcc-mingw-w64-x86-64 binutils-mingw-w64-x86-64")
    work.mkdir(parents=True, exist_ok=True)
    icon = work / "lifeboat.ico"
    write_icon(icon)
    (work / "messages.mc").write_text(messages_mc())
    _run([WINDMC, "-U", "-h", str(work), "-r", str(work), str(work / "messages.mc")])
    messages = work / "MSG00409.bin"
    built = []
    for launcher in LAUNCHERS:
        stem = launcher.name.removesuffix(".exe")
        rc = work / f"{stem}.rc"
        rc.write_text(version_rc(launcher, version, icon, HERE / "Lifeboat.manifest", messages))
        res = work / f"{stem}.res.o"
        _run([WINDRES, "-O", "coff", "-i", str(rc), "-o", str(res)])
        exe = out / launcher.name
        _run([GCC, "-municode", "-O2", "-s", "-Wall", "-Werror", "-Wl,--no-insert-timestamp",
              "-Wl,--dynamicbase,--nxcompat,--high-entropy-va",
              "-mwindows" if launcher.gui else "-mconsole", *(["-DLIFEBOAT_GUI"] if launcher.gui else []),
              "-o", str(exe), str(HERE / "launcher.c"), str(res)])
        built.append(exe)
    return built
