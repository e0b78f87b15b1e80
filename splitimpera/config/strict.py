"""The base of every schema (:class:`StrictModel`) and pydantic errors as one line users read.

A config error names the full dotted path of the bad key and what is allowed there: an
unknown key says which known key it may have meant, a rejected value is quoted.
"""

from __future__ import annotations

import types
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


def _admits_number_not_bool(annotation) -> bool:
    """Whether a field of this type takes numbers (int or float) but not booleans."""
    import typing

    if annotation is bool or annotation is Any:
        return False
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return not any(a is bool or a is Any for a in args) and any(_admits_number_not_bool(a) for a in args)
    return False


def _bool_for_number(value, annotation) -> bool:
    """Whether ``value`` holds a boolean where ``annotation`` expects a number (looking into
    lists, tuples and mappings of numbers)."""
    import typing

    if isinstance(value, bool):
        return _admits_number_not_bool(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_bool_for_number(value, a) for a in args if a is not type(None))
    if isinstance(value, (list, tuple)) and origin in (list, tuple) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return any(_bool_for_number(v, a) for v, a in zip(value, args))
        return any(_bool_for_number(v, args[0]) for v in value)
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return any(_bool_for_number(v, args[1]) for v in value.values())
    return False


class StrictModel(BaseModel):
    """Base of every schema: unknown keys are refused, numbers are finite, and a boolean is
    not taken for a number (YAML's ``true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, v, info):
        f = cls.model_fields.get(info.field_name) if info.field_name else None
        if f is not None and _bool_for_number(v, f.annotation):
            raise ValueError("expected a number, not true or false")
        return v



def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys a mapping at ``loc`` (inside ``model``) may hold; [] when not known."""
    import typing

    for part in loc:
        if model is None:
            return []
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        nxt = None
        for t in (f.annotation, *typing.get_args(f.annotation)):
            if isinstance(t, type) and issubclass(t, BaseModel):
                nxt = t
                break
        model = nxt
    return list(model.model_fields) if model is not None else []


def unknown_key_message(key: str, known: list[str]) -> str:
    """"unknown key", with the known key(s) it may have meant, else the known keys."""
    import difflib

    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {' or '.join(close)}?"
    return f"unknown key (known: {', '.join(known)})" if known else "unknown key"


def _error_text(error: dict, model: type[BaseModel] | None) -> str:
    """The message of one pydantic error, as users read it."""
    msg = error["msg"]
    if error["type"] == "value_error":  # our own validators' messages, without pydantic's prefix
        msg = msg.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = unknown_key_message(str(error["loc"][-1]), _allowed_keys(model, tuple(error["loc"][:-1])))
    elif ("input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], dict)
          and not (error["type"] == "value_error" and str(error["input"]) in msg)):
        # Every rejected value is named ("greater than 0 (got 0)"), unless our own message
        # already does (e.g. a trace file's).
        got = repr(error["input"])
        msg = f"{msg} (got {got if len(got) <= 80 else got[:60] + '…'})"
    return msg


def format_validation_error(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None,
                            ) -> tuple[str, str]:
    """(dotted field, message) of the first error; the count of others is appended. With the
    validated ``model``, an unknown key says which known key it may have meant."""
    errors = err.errors()
    # An unknown key first: a misspelt key is usually why a required one is missing.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"])
    field = ".".join(p for p in (prefix, loc) if p)
    msg = _error_text(first, model)
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return field, msg


def every_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every error of ``err`` on one line: ``field: message; field: message``."""
    return "; ".join(": ".join(p for p in (".".join(str(x) for x in e["loc"]), _error_text(e, model)) if p)
                     for e in err.errors())
