"""`lifeboat demo --headless` as a newcomer runs it: a real process, JSON lines, the whole story, exit 0."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.syncsim import PY, REPO, clean_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]  # safety net against hangs only


def test_demo_plays_the_whole_story_as_json_lines(tmp_path) -> None:
    """Tried: the demo command with a clean environment (no keystore needed, no internet): every line is
    JSON with t and step; the steps come in the story's order; continuity and recovery never come before the
    demo policy's minimum (no upper time limit: the machine is shared); both outage mails end in Sent
    Items; exit status 0."""
    proc = subprocess.run([PY, "-m", "desktop.cli", "demo", "--headless"], cwd=REPO, capture_output=True,
                          text=True, timeout=500, env=clean_env({"HOME": str(tmp_path)}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all({"t", "step"} <= set(line) for line in lines)
    steps = [line["step"] for line in lines if line["step"] != "notify"]
    assert steps == ["start", "servers", "sign-in", "signed-in", "synced", "sent", "outage", "continuity",
                     "sent", "recovery", "normal", "verified", "timeline", "done"]
    by_step = {line["step"]: line for line in lines}
    assert by_step["continuity"]["seconds_from_outage"] >= 6  # never before the demo policy's minimum
    assert by_step["normal"]["seconds_from_recovery"] >= 4
    assert by_step["verified"]["once_each"] is True and by_step["done"]["ok"] is True
    assert [line["title"] for line in lines if line["step"] == "notify"] == [
        "Continuity mode", "Microsoft 365 is back", "Mail is back to normal"]
