"""Fixtures shared by every test module (pytest finds them here; never import them by name).

- `env`: a throwaway cache key in LIFEBOAT_DB_KEY, msal's tokens in a plain file, no CA overrides.
- `store`: a real SQLCipher cache under the test's tmp_path, keyed by `env` (reopen with
  `continuity_kit.store_key()`).
- `provider`: the simulator in this process, signed in through the real msal code, with its
  `GraphSource` and `GraphRoute` (tests/continuity_kit.py `Provider`).
- `relay`: a real aiosmtpd relay (tests/mailservers.py `FaultySmtp`), the backup route's server.
- `sim` and `tokens`: the simulator in its own process (tests/syncsim.py `SimProcess`) and a sign-in
  to it, module-scoped; a module sizes its mailbox with `SIMULATOR = {"messages": 150, "seed": 11}`.
- `corpus_dir`: the third-party corpus (tests/corpus.py), or a skip that names LIFEBOAT_ASSETS.
- (autouse) in this process the machine policy file is a path of the test's own choosing: the fixed
  `desktop.config.MACHINE_POLICY` points at a file that does not exist unless a test writes it (tests
  that need one monkeypatch it). The environment cannot move it, so subprocesses read the real place.

Helpers that are not fixtures are imported from their modules: `from tests.syncsim import ...`,
`from tests.continuity_kit import ...` (one style everywhere: the repository root is on sys.path).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from desktop import config as config_mod
from sync.routes.graph import GraphRoute
from sync.sources.graph import GraphSource
from sync.store import Store, cache_path
from tests import corpus
from tests.continuity_kit import Provider, sign_in, sim_config, store_key
from tests.mailservers import FaultySmtp
from tests.syncsim import SimProcess, SimTokens, signed_in

DEFAULT_SIMULATOR = {"messages": 60, "seed": 11}

# The fast lane (`./dev check`, `pytest -m fast`): modules of pure logic and local files only, with no
# simulator (in or out of process), no Xvfb, D-Bus or keystore, no Postfix, no wine. A module belongs
# here when all of its tests qualify (a slow-marked test stays out).
FAST_MODULES = {
    "test_bridge", "test_cli", "test_cli_input", "test_compose", "test_corpus", "test_eventlog",
    "test_failover", "test_filenames", "test_jsapi", "test_layering", "test_mime", "test_mime_corpus",
    "test_msi_build", "test_network_errors", "test_outbox", "test_plan", "test_policy_admx",
    "test_policy_registry", "test_query", "test_servicing", "test_store", "test_store_failure",
    "test_sync_governor", "test_tenant_scripts", "test_ui_safehtml", "test_ui_view",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in FAST_MODULES and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(autouse=True)
def _machine_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_mod, "MACHINE_POLICY", Path("/nonexistent/lifeboat-tests/policy.toml"))


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("LIFEBOAT_INSECURE_TOKEN_CACHE", "1")  # tokens for a throwaway simulator
    monkeypatch.setenv("LIFEBOAT_DB_KEY", os.urandom(32).hex())


@pytest.fixture
def provider(env: None, tmp_path: Path) -> Iterator[Provider]:
    from simulator.server import Simulator

    sim = Simulator(tmp_path / "sim", messages=3, seed=5).start()
    # simulator set to deliver at once: sendMail's copy reaches Sent Items in the same request (real
    # Exchange takes seconds to minutes; the tests of that call sim.set_transport(sent_delay=...) themselves)
    sim.set_transport(sent_delay=0)
    try:
        cfg = sim_config(sim, tmp_path / "home")
        auth = sign_in(cfg)
        source = GraphSource(cfg.graph_url, auth, ca_file=cfg.ca_file, probe_timeout=(2.0, 3.0))
        yield Provider(sim, cfg, auth, source, GraphRoute(source))
        source.close()
    finally:
        sim.stop()


@pytest.fixture
def relay() -> Iterator[FaultySmtp]:
    with FaultySmtp() as server:
        yield server


@pytest.fixture
def store(env: None, tmp_path: Path) -> Iterator[Store]:
    with Store.open(cache_path(tmp_path / "home", "test"), store_key()) as s:
        yield s


@pytest.fixture(scope="module")
def sim(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """The simulator in its own process, sized by the module's SIMULATOR dict (messages, seed)."""
    size = {**DEFAULT_SIMULATOR, **getattr(request.module, "SIMULATOR", {})}
    s = SimProcess(tmp_path_factory.mktemp("sim"), messages=size["messages"], seed=size["seed"])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tokens(sim: SimProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimTokens]:
    with signed_in(sim, tmp_path_factory.mktemp("auth")) as t:
        yield t


@pytest.fixture
def corpus_dir() -> Path:
    """The third-party corpus folder; the test skips (naming LIFEBOAT_ASSETS) when it is absent."""
    return corpus.path(".")
