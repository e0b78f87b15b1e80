"""Progress of the heavy stages (fitting bottlenecks, measuring accuracy), for a front end to show.

Library code announces a stage and counts its steps::

    with stage("fitting autoencoder at 16 splits", total=16, unit="fit") as step:
        for ...:
            ...
            step()

A front end shows them by installing a reporter for the duration of a run
(:func:`reporting`): ``reporter(text, total, unit)`` returns an object with ``update(n)`` and
``close()`` (a ``tqdm`` bar qualifies). Without one a stage is only logged (INFO).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from typing import Callable, Iterator

log = logging.getLogger(__name__)

_REPORTER: contextvars.ContextVar[Callable | None] = contextvars.ContextVar("splitimpera_stage_reporter",
                                                                           default=None)


@contextlib.contextmanager
def stage(text: str, total: int | None = None, unit: str = "step") -> Iterator[Callable[[int], None]]:
    """A heavy stage of ``total`` steps; yields ``step(n=1)`` to count them."""
    log.info("%s", text)
    reporter = _REPORTER.get()
    handle = reporter(text, total, unit) if reporter is not None else None
    if handle is None:
        yield lambda n=1: None
        return
    try:
        yield lambda n=1: handle.update(n)
    finally:
        handle.close()


@contextlib.contextmanager
def reporting(reporter: Callable | None) -> Iterator[None]:
    """Show the stages announced while the block runs through ``reporter`` (None: none)."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)
