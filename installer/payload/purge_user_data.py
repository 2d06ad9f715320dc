"""Run by the MSI on `msiexec /x ... REMOVEUSERDATA=1` (`Lifeboat.exe --msi-purge-user-data`): deletes
every user's Lifeboat cache folder
(%LOCALAPPDATA%\\Lifeboat under each profile). Without that property, uninstall keeps user data.

The cache keys in each user's Credential Manager stay behind; without the cache they open nothing.
"""

import os
import shutil
from pathlib import Path


def profiles() -> list[Path]:
    users = Path(os.environ.get("PUBLIC", r"C:\Users\Public")).parent
    return [p for p in users.iterdir() if p.is_dir()] if users.is_dir() else []


def main() -> None:
    for profile in profiles():
        cache = profile / "AppData" / "Local" / "Lifeboat"
        if cache.is_dir():
            shutil.rmtree(cache, ignore_errors=True)
            print(f"removed {cache}")


if __name__ == "__main__":
    main()
