"""The one way tests find the third-party corpus (public MIME, Graph examples, XSS vectors, S/MIME keys).

The corpus lives outside the repository and is read in place, never copied: `LIFEBOAT_ASSETS` names
its folder, else `<repo>/../shared/assets`. Without it, tests that need it skip with `REASON` (which
names the variable); the rest of the suite covers parsing, rendering and storing with material the
project generates itself (tests/samples.py, sync.mime.build, the simulator's generator).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "LIFEBOAT_ASSETS"
REPO = Path(__file__).resolve().parents[1]
EXPLICIT = bool(os.environ.get(ENV))
ASSETS = Path(os.environ[ENV]) if EXPLICIT else REPO.parent / "shared" / "assets"
PRESENT = ASSETS.is_dir()
REASON = f"third-party corpus not found at {ASSETS}: set {ENV} to the shared assets folder"

needs_corpus = pytest.mark.skipif(not PRESENT, reason=REASON)


def files(sub: str, pattern: str = "*.eml") -> list[Path]:
    """The corpus files of one folder, sorted; [] when the corpus is absent (parametrize then skips)."""
    return sorted((ASSETS / sub).glob(pattern)) if PRESENT else []


def path(sub: str) -> Path:
    """A file or folder of the corpus; skips the calling test (with REASON) when the corpus is absent."""
    if not PRESENT:
        pytest.skip(REASON)
    return ASSETS / sub


def check_present(minimum: dict[str, int]) -> None:
    """The guard beside corpus tests (never under their skipif): a corpus named by LIFEBOAT_ASSETS must
    exist, and a corpus that is found must hold at least `minimum[folder]` files in each folder, so the
    parametrised tests over it are not vacuous. Skips only when no corpus was asked for or found."""
    if not PRESENT:
        assert not EXPLICIT, f"{ENV}={ASSETS} is not a folder"
        pytest.skip(REASON)
    for sub, least in minimum.items():
        got = len(list((ASSETS / sub).iterdir())) if (ASSETS / sub).is_dir() else 0
        assert got >= least, f"{ASSETS / sub}: {got} files, expected at least {least}"
