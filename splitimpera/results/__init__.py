"""Results and every folder format: a run's :class:`Result` (``run``), writing a folder
(``outputs``), reading one back (``folder``), sweep folders (``sweep``) and measure folders
(``fidelity``). Below the renderers: nothing here draws or formats for people."""

from .folder import load_result
from .run import DesignPoint, ExitPoint, Result

__all__ = ["DesignPoint", "ExitPoint", "Result", "load_result"]
