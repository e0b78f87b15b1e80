"""Parameter sweeps: a sweep file → scenarios → ranked design points, in-process or on Dask.

:mod:`.spec` reads and validates the sweep file and draws its points, :mod:`.run` runs them
(:func:`sweep`, returning a :class:`SweepResult`), and :mod:`.journal` writes finished points
as they come so that an interrupted sweep resumes where it stopped.
"""

from .run import SweepResult, sweep
from .spec import Sweep, SweepSpec, list_sweeps, load_sweep

__all__ = ["Sweep", "SweepResult", "SweepSpec", "list_sweeps", "load_sweep", "sweep"]
