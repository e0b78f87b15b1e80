import os
import tempfile

import pytest

# Tests never touch the user's cache: one private cache folder per test session.
os.environ.setdefault("SPLITIMPERA_CACHE", tempfile.mkdtemp(prefix="splitimpera-test-cache-"))


@pytest.fixture(scope="session")
def repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent
