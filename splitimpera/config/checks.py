"""Validation hooks: scenario checks that only a later stage can answer.

The scenario schema (:mod:`splitimpera.config.scenario`) must not import the model or the
accuracy layer, yet a scenario naming an unknown model, importance method or bottleneck
should fail when it is loaded, naming the field. So those layers register a check here
when they are imported, and scenario validation runs the checks of each section at the
point where it validates that section::

    register_check(_check_model_name, section="model")      # in model/loading.py

A check is ``fn(scenario, src_for) -> None`` and raises :class:`~splitimpera.errors.UserError`
with ``field`` (the dotted key) and ``source=src_for(field)`` (the file, or the ``--set``
that gave the key). Importing ``splitimpera`` imports every layer, so the checks are always
registered before a scenario is validated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import UserError

if TYPE_CHECKING:
    from .scenario import Scenario

Check = Callable[["Scenario", Callable[[str], str]], None]

# section → {check key: check}, in registration order
_CHECKS: dict[str, dict[str, Check]] = {}


def _key(fn: Check) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def register_check(fn: Check, *, section: str) -> Check:
    """Run ``fn(scenario, src_for)`` when the scenario's ``section`` (``model``, ``analysis``,
    ``bottleneck``) is validated; returns ``fn``. Registering the same function again (a
    reloaded module) replaces it rather than running it twice."""
    if not callable(fn):
        raise TypeError(f"a scenario check must be callable, got {fn!r}")
    _CHECKS.setdefault(section, {})[_key(fn)] = fn
    return fn


def registered_checks(section: str | None = None) -> list[Check]:
    """The checks of ``section`` (all sections when None), in registration order."""
    sections = _CHECKS.values() if section is None else [_CHECKS.get(section, {})]
    return [fn for checks in sections for fn in checks.values()]


def run_checks(sc: "Scenario", src_for: Callable[[str], str], section: str) -> None:
    """Run the checks of ``section``; a UserError a check raised without a source or field
    gets ``src_for(field)`` and the section filled in."""
    for fn in registered_checks(section):
        try:
            fn(sc, src_for)
        except UserError as e:
            if e.source and e.field:
                raise
            field = e.field or section
            raise e.at(source=src_for(field), field=field) from None
