"""Where device and network profiles come from: folders of YAML files, and a registry of each.

Profiles live as YAML files in ``profiles/devices/*.yaml`` and ``profiles/networks/*.yaml``
at the top of the repository, plus any folders named in ``$SPLITIMPERA_PROFILES``
(``os.pathsep``-separated; each holds ``devices/`` and/or ``networks/``). The schema is
:mod:`splitimpera.config.hardware`.

Registry API in the style of torchvision's ``models/_api.py``::

    list_devices(include="jetson*")   get_device("rpi4")   register_device(profile)
"""

from __future__ import annotations

import copy
import difflib
import functools
import logging
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import UserError
from .hardware import DeviceProfile, NetworkProfile
from .registry import Registry
from .strict import every_validation_error, format_validation_error
from .yaml_files import read_yaml

log = logging.getLogger(__name__)

_REPO_PROFILES = Path(__file__).resolve().parent / "profiles"  # bundled package data (the repo's profiles/ links here)
_KINDS = {"devices": DeviceProfile, "networks": NetworkProfile}


def profile_dirs() -> list[Path]:
    """Folders searched for profiles, in order: ``$SPLITIMPERA_PROFILES``, then the repo's."""
    extra = [Path(p) for p in os.environ.get("SPLITIMPERA_PROFILES", "").split(os.pathsep) if p]
    for p in extra:
        if not p.is_dir():
            _warn_missing_profiles(str(p))
    return [*extra, _REPO_PROFILES]


@functools.lru_cache(maxsize=None)  # once per folder and process: profile_dirs runs on every look-up
def _warn_missing_profiles(path: str) -> None:
    log.warning("$SPLITIMPERA_PROFILES names %s, which is not a folder: its profiles are not loaded", path)


def resolve_relative_paths(kind: str, data: Any, base_dir: Path) -> Any:
    """A profile mapping with its relative file paths (``trace_csv``) made absolute against
    ``base_dir`` (the folder of the YAML file naming them); other input is returned as is."""
    if kind == "networks" and isinstance(data, dict):
        tr = data.get("trace_csv")
        if isinstance(tr, str) and tr and not Path(tr).is_absolute():
            data = {**data, "trace_csv": str((Path(base_dir) / tr).resolve())}
    if kind == "devices" and isinstance(data, dict) and isinstance(data.get("compute"), dict):
        comp = dict(data["compute"])
        absolute = lambda f: f if Path(f).is_absolute() else str((Path(base_dir) / f).resolve())  # noqa: E731
        if isinstance(comp.get("residual_table"), str) and comp["residual_table"]:
            comp["residual_table"] = absolute(comp["residual_table"])
        if isinstance(comp.get("timings"), list):
            comp["timings"] = [{**t, "file": absolute(t["file"])} if isinstance(t, dict) and isinstance(
                t.get("file"), str) and t["file"] else t for t in comp["timings"]]
        data = {**data, "compute": comp}
    return data


class ProfileFileError(UserError):
    """A profile file that does not validate. Its line names the file (not the scenario that
    names the profile), wherever the profile is looked up."""


def parse_profile(kind: str, data: Any, source: str, prefix: str = "", every: bool = False,
                  ) -> DeviceProfile | NetworkProfile:
    """Validate a profile mapping. ``every``: the message lists every error (a profile file),
    else the first and the count of the others (a scenario's field)."""
    cls = _KINDS[kind]
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping, got {type(data).__name__}", source=source, field=prefix or None)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        if every:
            raise UserError(every_validation_error(e, cls), source=source) from None
        field, msg = format_validation_error(e, prefix)
        raise UserError(msg, source=source, field=field) from None


def _read_profile_folders(kind: str, reg: "Registry") -> None:
    """The loader of :data:`DEVICES` / :data:`NETWORKS`: every ``<folder>/<kind>/*.yaml`` of
    :func:`profile_dirs`; a name found in an earlier folder shadows the later ones.

    A file may start from another profile of its kind with ``base: <name>`` (its keys are
    deep-merged over that profile's, as a scenario's ``base:``; the name is the file's own).
    A file that does not load or validate is marked broken: looking its name up raises its
    error (naming the file), and :func:`warn_broken_profiles` warns about it when unused.
    """
    files: dict[str, Path] = {}
    for folder in profile_dirs():
        for path in sorted((folder / kind).glob("*.yaml")):
            if path.stem in files:
                log.debug("profile %s in %s shadowed by %s", path.stem, path, files[path.stem])
                continue
            files[path.stem] = path
    raws: dict[str, dict] = {}

    def load(name: str, chain: tuple[str, ...]) -> dict:
        """The resolved mapping of profile file ``name`` (its base merged in), validated and
        registered; raises ProfileFileError."""
        if name in raws:
            return raws[name]
        path = files[name]
        if name in reg.broken_names():
            raise reg.broken_names()[name]
        try:
            data = read_yaml(path)
            if not isinstance(data, dict):
                raise UserError(f"expected a {kind[:-1]} profile mapping, got "
                                f"{'an empty file' if data is None else type(data).__name__}", source=str(path))
            data = resolve_relative_paths(kind, data, path.parent)
            if "base" in data:
                data = dict(data)
                base = data.pop("base")
                if not isinstance(base, str) or not base:
                    raise UserError(f"expected a {kind[:-1]} profile name, got {base!r}", source=str(path),
                                    field="base")
                if base == name or base in chain:
                    raise UserError(f"{' → '.join((*chain, name, base))}: a profile cannot be its own base",
                                    source=str(path), field="base")
                if base not in files:
                    close = difflib.get_close_matches(base, sorted(files), n=3)
                    raise UserError(f"unknown {kind[:-1]} profile {base!r}"
                                    + (f"; did you mean {', '.join(close)}?" if close else "")
                                    + f" (known: {', '.join(sorted(files))})", source=str(path), field="base")
                try:
                    base_raw = load(base, (*chain, name))
                except UserError:
                    raise UserError(f"its base {base!r} does not load ({files[base]})", source=str(path),
                                    field="base") from None
                data = deep_merge({k: v for k, v in base_raw.items() if k != "name"}, data)
            prof = parse_profile(kind, data, str(path), every=True)
            if prof.name != path.stem:
                raise UserError(f"name {prof.name!r} must equal the file stem {path.stem!r}",
                                source=str(path), field="name")
        except UserError as e:
            err = ProfileFileError(e.message, source=e.source or str(path), field=e.field)
            reg.broken(name, err)
            raise err from None
        # raw: the keys as resolved (base merged in), which a scenario's ``base:`` merges over.
        reg.register(prof.name, prof, meta={"raw": data, "path": path})
        raws[name] = data
        return data

    for name in files:
        try:
            load(name, ())
        except ProfileFileError:
            pass  # marked broken: an error where it is used, a warning where not


_WARNED: set[str] = set()


def warn_broken_profiles(used: dict[str, set[str]] | None = None) -> None:
    """Warn, one line per file and once per process, about profile files that do not load
    and are not in ``used`` (kind → names looked up): an unused broken file fails nothing."""
    for kind in _KINDS:
        for name, err in _registry(kind).broken_names().items():
            if name in (used or {}).get(kind, ()) or err.source in _WARNED:
                continue
            _WARNED.add(err.source)
            log.warning("%s: ignored, it does not load: %s", err.source,
                        ": ".join(p for p in (err.field, err.message) if p))


def _profile_registry(kind: str) -> "Registry":
    return Registry(f"{kind[:-1]} profile", loader=lambda reg: _read_profile_folders(kind, reg))


DEVICES: Registry[DeviceProfile] = _profile_registry("devices")
NETWORKS: Registry[NetworkProfile] = _profile_registry("networks")


def _registry(kind: str) -> Registry:
    return DEVICES if kind == "devices" else NETWORKS


def profile_raw(kind: str, name: str) -> dict:
    """A registered profile as plain data: the YAML mapping it was read from, or the dump of
    a profile registered in code (a deep copy, safe to change)."""
    reg = _registry(kind)
    prof = reg.get(name)
    raw = reg.meta(name).get("raw")
    return copy.deepcopy(raw) if raw is not None else prof.model_dump()


def profile_path(kind: str, name: str) -> Path | None:
    """The YAML file a registered profile was read from; None for one registered in code."""
    return _registry(kind).meta(name).get("path")


def register_device(profile: DeviceProfile, *, overwrite: bool = False) -> None:
    DEVICES.register(profile.name, profile, overwrite=overwrite)


def register_network(profile: NetworkProfile, *, overwrite: bool = False) -> None:
    NETWORKS.register(profile.name, profile, overwrite=overwrite)


def get_device(name: str) -> DeviceProfile:
    return DEVICES.get(name)


def get_network(name: str) -> NetworkProfile:
    return NETWORKS.get(name)


def list_devices(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Device (and server) profile names, sorted, filtered by fnmatch globs."""
    return DEVICES.list(include, exclude)


def list_networks(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Network profile names, sorted, filtered by fnmatch globs."""
    return NETWORKS.list(include, exclude)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_profile(kind: str, spec: Any, source: str, field: str):
    """A scenario's ``device``/``server``/``network`` entry → profile.

    ``spec`` is a profile name, or a mapping: a full inline profile, or ``base: <name>`` plus
    the keys to change (deep-merged over the named profile).
    """
    if isinstance(spec, str):
        try:
            return _registry(kind).get(spec)
        except ProfileFileError:
            raise  # names the profile's file, not the scenario
        except UserError as e:
            raise e.at(source=source, field=field) from None
    if not isinstance(spec, dict):
        raise UserError(f"expected a profile name or a mapping, got {type(spec).__name__}",
                        source=source, field=field)
    spec = dict(spec)
    base = spec.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise UserError("expected a profile name", source=source, field=f"{field}.base")
        try:
            raw = profile_raw(kind, base)
        except ProfileFileError:
            raise
        except UserError as e:
            raise e.at(source=source, field=f"{field}.base") from None
        raw.setdefault("name", base)
        if "name" not in spec:
            spec["name"] = f"{base}*" if spec else base
        spec = deep_merge(raw, spec)
    elif "name" not in spec:
        spec["name"] = "inline"
    return parse_profile(kind, spec, source, prefix=field)
