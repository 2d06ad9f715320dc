"""The guard of the corpus tests (tests/corpus.py), deliberately not under their skipif: when the
third-party corpus is asked for (LIFEBOAT_ASSETS) or found (../shared/assets), it must hold what the
parametrised tests iterate over, so they cannot pass by iterating over nothing."""

from __future__ import annotations

import os
import subprocess
import sys

from tests import corpus


def test_corpus_is_there() -> None:
    """Tried: the corpus folders hold the expected material (moved here from test_mime_corpus.py, where
    it sat under the same skipif as the tests it guards); skips, naming LIFEBOAT_ASSETS, only when no
    corpus was asked for or found."""
    corpus.check_present({"mime-public": 250, "tnef-raw": 1, "smime-test-keys": 2, "xss": 4,
                          "graph/docs-examples": 3})
    assert len(corpus.files("mime-public")) >= 250


def test_a_named_corpus_that_is_missing_fails_rather_than_skips(tmp_path) -> None:
    """Tried: LIFEBOAT_ASSETS naming a folder that does not exist, in a child pytest: the guard fails
    (a typo must not silently turn every corpus test into a skip); without the variable and with no
    corpus beside the repository it would skip with the variable's name in the reason."""
    missing = tmp_path / "nowhere"
    env = {**os.environ, corpus.ENV: str(missing)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         f"{corpus.REPO / 'tests' / 'test_corpus.py'}::test_corpus_is_there"],
        cwd=corpus.REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1 and "is not a folder" in proc.stdout, proc.stdout[-2000:]
