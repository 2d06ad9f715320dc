"""What Lifeboat.exe and lifeboat-cli.exe run (installer/launcher/launcher.c loads python313.dll and
calls Py_Main with `-I -c "import lifeboat_launcher; lifeboat_launcher.main()"`): desktop.cli.main with
the launcher's own arguments. Installed into python\\Lib\\site-packages.

Under Lifeboat.exe (GUI subsystem) there is no console: stdout and stderr go to
%LOCALAPPDATA%\\Lifeboat\\logs\\launcher.log. `--msi-purge-user-data` is the MSI's uninstall action
(REMOVEUSERDATA=1) and `--window-child` starts the window's own process (desktop.window.child_command):
neither is a user command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    if sys.stderr is None:  # no console (GUI subsystem): stderr, and the C-level fd 2, go to the log
        logs = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "Lifeboat" / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(logs / "launcher.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        os.dup2(sys.stderr.fileno(), 2)
    if sys.stdout is None:  # a pipe given by the parent (the window child's protocol) is kept
        sys.stdout = sys.stderr
    args = sys.argv[1:]
    sys.argv[0] = "lifeboat"  # argparse's prog in --help and errors
    if args == ["--msi-purge-user-data"]:
        import purge_user_data

        purge_user_data.main()
        sys.exit(0)
    if args == ["--window-child"]:  # desktop.window.child_command: the window's own process
        import runpy

        sys.argv[1:] = ["--child"]
        runpy.run_module("desktop.window", run_name="__main__", alter_sys=True)
        sys.exit(0)
    from desktop.cli import main as cli_main

    sys.exit(cli_main(args))
