"""One registry of named things, in the style of torchvision's ``models/_api.py``.

Device and network profiles, importance methods, bottlenecks and zoo models are each a
:class:`Registry`; the modules that own them wrap it in ``register_…`` / ``get_…`` /
``list_…`` functions::

    DEVICES = Registry("device profile", loader=_read_profile_folders)
    DEVICES.list(include="jetson*")     # sorted names matching a glob (or a list of globs)
    DEVICES.get("rpi4")                 # unknown name: a one-line UserError with suggestions
    DEVICES.match(["rpi*", "jetson_nano"])  # names and globs → registered names, in order

A ``loader`` fills the registry on first use (and again after :meth:`Registry.reset`), so
defaults cost nothing until asked for and tests can return to them. A ``fallback`` answers
names that are not registered but parse (the bottlenecks' ``int4_channel``, ``top25_random``).
Registering a name twice is a programming error (``ValueError``) unless ``overwrite``; an
unknown name is bad user input (:class:`~splitimpera.errors.UserError`). A loader may mark a
name :meth:`~Registry.broken` (its file does not validate): looking it up raises that error,
while every other name works.
"""

from __future__ import annotations

import difflib
import fnmatch
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

from ..errors import UserError

T = TypeVar("T")

_GLOB_CHARS = frozenset("*?[")


def _patterns(p: str | Iterable[str] | None) -> list[str] | None:
    if p is None:
        return None
    return [p] if isinstance(p, str) else [str(x) for x in p]


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` holds fnmatch wildcards (``*``, ``?``, ``[…]``)."""
    return any(c in _GLOB_CHARS for c in pattern)


class Registry(Generic[T]):
    """Named objects of one kind.

    ``what`` names the kind in messages (``"device profile"``). ``loader(registry)``, when
    given, registers the defaults; it runs once, on first access, and again after
    :meth:`reset`. ``fallback(name)`` returns an object for a name that is not registered
    (a parametric name) or None. ``sort``: :meth:`list` returns names sorted (default) or in
    registration order. ``hint`` is appended to the known names in the unknown-name error
    (e.g. the grammar of the parametric names).
    """

    def __init__(self, what: str, *, loader: Callable[["Registry[T]"], None] | None = None,
                 fallback: Callable[[str], T | None] | None = None, sort: bool = True, hint: str = ""):
        self.what = what
        self._loader = loader
        self._fallback = fallback
        self._sort = sort
        self._hint = hint
        self._items: dict[str, T] = {}
        self._meta: dict[str, dict] = {}
        self._broken: dict[str, UserError] = {}
        self._loaded = loader is None
        # Re-entrant: the loader registers through register(), which checks the load state.
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = f"{len(self._items)} entries" if self._loaded else "not loaded"
        return f"Registry({self.what!r}, {state})"

    # ---------------------------------------------------------------------------------------
    # loading

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            try:
                self._loader(self)
            except BaseException:
                # A failed load leaves nothing half-filled: the next access fails the same way.
                self._items.clear()
                self._meta.clear()
                self._broken.clear()
                self._loaded = False
                raise

    def reset(self) -> None:
        """Forget every entry; the loader (if any) runs again on next use."""
        with self._lock:
            self._items.clear()
            self._meta.clear()
            self._broken.clear()
            self._loaded = self._loader is None

    # ---------------------------------------------------------------------------------------
    # registering

    def register(self, name: str, obj: T, *, overwrite: bool = False, meta: dict | None = None) -> T:
        """Add ``obj`` under ``name`` (with optional ``meta``data) and return it.

        A name already registered raises ``ValueError`` unless ``overwrite``.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} name must be a non-empty string, got {name!r}")
        self._ensure_loaded()
        with self._lock:
            if name in self._items and not overwrite:
                raise ValueError(f"a {self.what} named {name!r} is already registered")
            self._items.pop(name, None)  # an overwrite moves the name to the end of the order
            self._items[name] = obj
            self._meta[name] = dict(meta or {})
        return obj

    def broken(self, name: str, error: UserError) -> None:
        """Mark ``name`` as known but unusable: :meth:`get` raises ``error`` for it (a loader's
        file that does not validate), instead of the unknown-name error."""
        self._ensure_loaded()
        with self._lock:
            self._broken[name] = error

    def broken_names(self) -> dict[str, UserError]:
        """The names marked :meth:`broken`, with their errors."""
        self._ensure_loaded()
        return dict(self._broken)

    def pop(self, name: str, *default):
        """Remove ``name`` and return its object (``default`` when given and not registered)."""
        self._ensure_loaded()
        with self._lock:
            self._meta.pop(name, None)
            return self._items.pop(name, *default)

    # ---------------------------------------------------------------------------------------
    # looking up

    def get(self, name: str) -> T:
        """The object registered as ``name``, else the fallback's; else a UserError naming
        the unknown name, close registered names and all known ones."""
        self._ensure_loaded()
        try:
            return self._items[name]
        except (KeyError, TypeError):
            pass
        if self._fallback is not None and isinstance(name, str):
            obj = self._fallback(name)
            if obj is not None:
                return obj
        if isinstance(name, str) and name in self._broken:
            err = self._broken[name]
            raise type(err)(err.message, source=err.source, field=err.field)
        raise self._unknown(name)

    def meta(self, name: str) -> dict:
        """A copy of the metadata registered with ``name`` (empty when none was given)."""
        self.get(name)
        return dict(self._meta.get(name, {}))

    def _known(self) -> str:
        known = ", ".join(self.list()) or "none"
        return f"{known}; {self._hint}" if self._hint else known

    def _unknown(self, name) -> UserError:
        close = difflib.get_close_matches(str(name), self.list(), n=3) if isinstance(name, str) else []
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return UserError(f"unknown {self.what} {name!r}{hint} (known: {self._known()})")

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered (parametric names answered by the fallback are not)."""
        self._ensure_loaded()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._ensure_loaded()
        return len(self._items)

    def list(self, include: str | Iterable[str] | None = None,
             exclude: str | Iterable[str] | None = None) -> list[str]:
        """Registered names matching any ``include`` glob and no ``exclude`` glob.

        Sorted, or in registration order for a registry made with ``sort=False``.
        """
        self._ensure_loaded()
        names = sorted(self._items) if self._sort else [*self._items]
        inc, exc = _patterns(include), _patterns(exclude)
        if inc is not None:
            names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in inc)]
        if exc is not None:
            names = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exc)]
        return names

    def match(self, patterns: str | Iterable[str]) -> list[str]:
        """Names and globs → names, in the order given, each once.

        A glob expands to the registered names it matches, in :meth:`list` order; a plain
        name must be registered or answered by the fallback (a parametric name is kept as
        written). A glob that matches nothing or an unknown name is a UserError naming it.
        """
        out: dict[str, None] = {}
        for p in _patterns(patterns):
            if p in self:
                out[p] = None
            elif is_glob(p):
                hits = self.list(include=p)
                if not hits:
                    raise UserError(f"no {self.what} matches {p!r} (known: {self._known()})")
                out.update(dict.fromkeys(hits))
            else:
                self.get(p)  # the fallback's answer, or the unknown-name error
                out[p] = None
        return [*out]
