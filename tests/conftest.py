import os
import tempfile

import pytest

# Tests never touch the user's cache: one private cache folder per test session.
os.environ.setdefault("SPLITIMPERA_CACHE", tempfile.mkdtemp(prefix="splitimpera-test-cache-"))

# `make test` runs the suite at one torch thread count and the tests of trained values
# (marker ``trained``) again at another: a trained network's bits change with the count.
if os.environ.get("SPLITIMPERA_TEST_THREADS"):
    import torch

    # A cache from a run at another count would hand back its trained values: train afresh.
    os.environ["SPLITIMPERA_CACHE"] = tempfile.mkdtemp(prefix="splitimpera-test-cache-")

    torch.set_num_threads(int(os.environ["SPLITIMPERA_TEST_THREADS"]))


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def prof():
    """The per-split profile of the bundled digits CNN at 1x32x32 (weights do not change it)."""
    import splitimpera as si

    return si.profile_model(si.load_model("digits_cnn", "none"), (1, 32, 32))


@pytest.fixture(scope="session")
def demo_scenario(repo_root):
    """``demo_scenario(**overrides)``: the bundled demo scenario with dotted-key overrides."""
    import splitimpera as si

    def make(**over):
        return si.load_scenario(repo_root / "scenarios" / "demo.yaml", overrides=over)

    return make


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Isolated folders for bad-input tests: (scenario folder, -o folder, cache folder, cwd);
    out exists and is empty, the cache does not exist."""
    scen, out, cache, cwd = (tmp_path / n for n in ("scen", "out", "cache", "cwd"))
    for d in (scen, out, cwd):
        d.mkdir()
    monkeypatch.setenv("SPLITIMPERA_CACHE", str(cache))
    monkeypatch.delenv("SPLITIMPERA_PROFILES", raising=False)
    monkeypatch.chdir(cwd)  # a relative output.dir must not be written either
    return scen, out, cache, cwd
