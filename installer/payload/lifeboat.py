"""Lifeboat's launcher in the Windows install: `python\\pythonw.exe lifeboat.py` (GUI, Start menu, Run key)
or `lifeboat.cmd ARGS` (console). Runs the `lifeboat` console script's entry point, desktop.cli:main.

Under pythonw there is no console: stdout and stderr go to %LOCALAPPDATA%\\Lifeboat\\logs\\launcher.log.
"""

import os
import sys
from pathlib import Path

if sys.stdout is None or sys.stderr is None:
    logs = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "Lifeboat" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sys.stdout = sys.stderr = open(logs / "launcher.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115

from desktop.cli import main

sys.exit(main())
