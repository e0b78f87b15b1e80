"""ns-3 as the network oracle (optional extra ``[ns3]``: the ``ns3`` wheel, 3.44).

Nothing here runs in a normal simulation: these modules build ns-3 scenarios that measure
what :mod:`splitimpera.latency.transport` and the profiles' contention curves predict, for
``benchmarks/bench_network_fidelity.py`` and the agreement tests. ns-3 is imported lazily
(``from ns import ns`` takes ~9 s and prints harmless "Failed to materialize symbols" lines);
:func:`available` says whether it is installed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os


def available() -> bool:
    """Whether the ns-3 Python bindings (the ``ns3`` wheel) are installed."""
    return importlib.util.find_spec("ns") is not None and importlib.util.find_spec("cppyy") is not None


def require() -> None:
    """Raise a clear error when ns-3 is not installed."""
    if not available():
        raise RuntimeError("ns-3 is not installed: pip install 'splitimpera[ns3]' (the ns3 wheel, ~520 MB)")


@contextlib.contextmanager
def _quiet_stderr():
    """cppyy prints "Failed to materialize symbols" lines on import: harmless, hidden."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.lru_cache(maxsize=None)
def compile_cpp(code: str, namespace: str):
    """Import ns-3, compile ``code`` with cppyy (once per process: cached) and return
    ``cppyy.gbl.<namespace>``."""
    require()
    with _quiet_stderr():
        from ns import ns  # noqa: F401  (loads the ns-3 libraries)
        import cppyy

        cppyy.cppdef(code)
    return getattr(cppyy.gbl, namespace)

