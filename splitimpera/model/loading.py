"""Model loading: torchvision by name, the bundled zoo, and user models (``package.module:function``).

``weights``:

- ``none``: random initialisation (seeded by the caller);
- ``default``: torchvision's default weights, which must already be in the torch hub cache
  (nothing is downloaded at run time), or the zoo model's bundled weights;
- a torchvision weights name (``IMAGENET1K_V1`` or ``ResNet50_Weights.IMAGENET1K_V1``);
- a path to a state dict (loaded with ``weights_only=True``).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import logging
import os
import pickle
import struct
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from ..config.checks import register_check
from ..errors import UserError, first_line
from .zoo import get_zoo_entry, list_zoo_models

if TYPE_CHECKING:
    from ..config.scenario import Scenario
    from .splits import TracedModel

log = logging.getLogger(__name__)

WEIGHT_KEYWORDS = ("none", "default")
NAME_FIELD, WEIGHTS_FIELD = "model.name", "model.weights"


def _torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return tvm.list_models(module=tvm)


def model_kind(name: str) -> str:
    """``zoo``, ``torchvision`` or ``user``; raises UserError for an unknown name."""
    if name in list_zoo_models():
        return "zoo"
    if ":" in name:
        return "user"
    if name in _torchvision_names():
        return "torchvision"
    known = list_zoo_models() + _torchvision_names()
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown model {name!r}: not a zoo model ({', '.join(list_zoo_models())}), "
                    f"not a torchvision classification model, not package.module:function{hint}",
                    field=NAME_FIELD)


def _import_user_module(mod_name: str, search_dir: Path | None):
    """``import mod_name``, from the Python path or else from ``search_dir`` (the scenario's
    folder), which is on ``sys.path`` only during the import."""
    try:
        return importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        top = mod_name.split(".")[0]
        if search_dir is None or e.name != top or not any(
                (Path(search_dir) / p).exists() for p in (f"{top}.py", f"{top}/__init__.py")):
            raise
    where = str(search_dir)
    sys.path.insert(0, where)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(mod_name)
    finally:
        if where in sys.path:
            sys.path.remove(where)


def _user_builder(name: str, search_dir: Path | None = None):
    mod_name, _, fn_name = name.partition(":")
    if not mod_name or not fn_name:
        raise UserError(f"user model {name!r} must be written package.module:function", field=NAME_FIELD)
    try:
        mod = _import_user_module(mod_name, search_dir)
    except ImportError as e:
        where = "" if search_dir is None else f" and in the scenario's folder {search_dir}"
        raise UserError(f"cannot import module {mod_name!r} for user model: {e} (looked on the Python path{where}; "
                        "or set PYTHONPATH to its folder)", field=NAME_FIELD) from None
    try:
        return getattr(mod, fn_name)
    except AttributeError:
        raise UserError(f"module {mod_name!r} has no attribute {fn_name!r}", field=NAME_FIELD) from None


def check_model(name: str, weights: str | None, search_dir: Path | None = None) -> None:
    """Cheap checks done when a scenario is loaded, before any heavy work (``search_dir``:
    where a user model's module may also be, the scenario's folder)."""
    kind = model_kind(name)
    if kind == "user":
        _user_builder(name, search_dir)
    w = _weights_keyword(weights)
    if w in WEIGHT_KEYWORDS:
        return
    if kind == "torchvision" and _tv_weights_enum(name, w) is not None:
        return
    if not Path(w).is_file():
        raise UserError(f"weights file not found: {w}", field=WEIGHTS_FIELD)


def _check_scenario_model(sc: "Scenario", src_for) -> None:
    """Scenario hook (``model`` section, see :mod:`splitimpera.config.checks`): the model
    name and weights resolve, and a user model states its input shape."""
    try:
        check_model(sc.model.name, sc.model.weights, sc.base_dir)
    except UserError as e:
        field = e.field or NAME_FIELD
        raise UserError(e.message, source=src_for(field), field=field) from None
    if model_kind(sc.model.name) == "user" and sc.model.input_shape is None:
        raise UserError("required for user models (e.g. [3, 224, 224])", source=src_for("model.input_shape"),
                        field="model.input_shape")


register_check(_check_scenario_model, section="model")


def _weights_keyword(weights) -> str:
    if weights is None:
        return "none"
    return str(weights)


def _tv_weights_enum(name: str, w: str):
    from torchvision.models import get_model_weights

    enum = get_model_weights(name)
    short = w.split(".")[-1]
    if "." in w and w.split(".")[0] != enum.__name__:
        return None
    return enum.__members__.get(short)


def hub_checkpoint_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def load_model(name: str, weights: str | None = None, num_classes: int | None = None,
               search_dir: str | Path | None = None) -> nn.Module:
    """Build a model by name and load its weights; returns it in eval mode on the CPU.
    ``search_dir``: a folder a user model's module may also be in (the scenario's).

    Raises :class:`UserError` (naming what to do) for unknown names, unreadable weights, and
    torchvision weights that are not in the local cache.
    """
    kind = model_kind(name)
    w = _weights_keyword(weights)
    if kind == "zoo":
        entry = get_zoo_entry(name)
        model = entry.builder(num_classes=num_classes or entry.num_classes)
        if w == "default":
            if entry.weights_path is None:
                raise UserError(f"zoo model {name!r} ships no weights; use weights: none or a path", field=WEIGHTS_FIELD)
            if num_classes not in (None, entry.num_classes):
                raise UserError(f"bundled weights of {name!r} have {entry.num_classes} classes, "
                                f"not {num_classes}", field="model.num_classes")
            _load_state(model, entry.weights_path)
        elif w != "none":
            _load_state(model, Path(w))
    elif kind == "torchvision":
        model = _load_torchvision(name, w, num_classes)
    else:
        builder = _user_builder(name, None if search_dir is None else Path(search_dir))
        kwargs = {"num_classes": num_classes} if num_classes is not None else {}
        try:
            model = builder(**kwargs)
        except Exception as e:  # user code: report, don't crash
            raise UserError(f"user model {name!r} failed to build: {e.__class__.__name__}: {e}",
                            field=NAME_FIELD) from None
        if not isinstance(model, nn.Module):
            raise UserError(f"user model {name!r} returned {type(model).__name__}, not a torch.nn.Module",
                            field=NAME_FIELD)
        if w == "default":
            raise UserError("user models have no default weights; use weights: none or a path", field=WEIGHTS_FIELD)
        if w != "none":
            _load_state(model, Path(w))
    return model.eval()


def _load_torchvision(name: str, w: str, num_classes: int | None) -> nn.Module:
    import torchvision.models as tvm

    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    if w == "none":
        return tvm.get_model(name, weights=None, **kwargs)
    enum_member = tvm.get_model_weights(name).DEFAULT if w == "default" else _tv_weights_enum(name, w)
    if enum_member is None:  # a state-dict path
        model = tvm.get_model(name, weights=None, **kwargs)
        _load_state(model, Path(w))
        return model
    ckpt = hub_checkpoint_path(enum_member.url)
    if not ckpt.is_file():
        raise UserError(
            f"torchvision weights {enum_member} for {name!r} are not in the local cache ({ckpt}) and "
            f"nothing is downloaded at run time: download {enum_member.url} on a connected machine "
            f"and copy it to {ckpt}, or set weights to a state-dict path, or to none",
            field=WEIGHTS_FIELD,
        )
    try:
        with _cached_weights_only():
            return tvm.get_model(name, weights=enum_member, **kwargs)
    except ValueError as e:  # e.g. num_classes that disagrees with the weights' categories
        raise UserError(f"cannot load {enum_member} for {name!r}: {e}", field=WEIGHTS_FIELD) from None
    except _NOT_TORCH_FILE as e:
        raise UserError(f"cannot load cached weights {ckpt}: {str(e).splitlines()[0] if str(e) else 'not a state dict'} "
                        "(only a file of tensors is loaded)", field=WEIGHTS_FIELD) from None


_HUB_LOCK = threading.Lock()


def check_published_hash(path: Path) -> None:
    """UserError unless the file's SHA-256 starts with the hex digits torchvision publishes in
    its name (``resnet18-f37072fd.pth``); a name without them is not checked."""
    m = torch.hub.HASH_REGEX.search(path.name)
    if m is None or not m.group(1):
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if not digest.startswith(m.group(1)):
        raise UserError(f"cached weights {path} are not the published file: its name says sha256 {m.group(1)}…, "
                        f"the file's is {digest[:len(m.group(1))]}…; delete it and copy the published file again",
                        field=WEIGHTS_FIELD)


@contextlib.contextmanager
def _cached_weights_only():
    """While torchvision builds a model with its weights, read them from the local hub cache
    with ``weights_only=True``: its own loader unpickles them in full (``weights_only=False``)
    and would download a missing file. The builder keeps its say over the model's arguments
    (classes, ``transform_input`` …); only the reading of the file changes."""
    from torchvision.models import _api

    def load(url, *args, **kwargs):
        path = hub_checkpoint_path(url)
        check_published_hash(path)
        return torch.load(path, map_location="cpu", weights_only=True)

    with _HUB_LOCK:
        saved = _api.load_state_dict_from_url
        _api.load_state_dict_from_url = load
        try:
            yield
        finally:
            _api.load_state_dict_from_url = saved


# Errors torch.load(weights_only=True) raises on a file it cannot take: bytes that are not
# its format, or a pickle of objects other than tensors and plain containers (never loaded,
# as loading them could run code from the file).
_NOT_TORCH_FILE = (pickle.UnpicklingError, EOFError, RuntimeError, KeyError, ValueError, IndexError, TypeError,
                   struct.error)


def _load_state(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise UserError(f"weights file not found: {path}", field=WEIGHTS_FIELD)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:
        raise UserError(f"cannot read weights {path}: {e.strerror or first_line(e)}", field=WEIGHTS_FIELD) from None
    except _NOT_TORCH_FILE:  # what torch raises for bytes it cannot take (random bytes, text, a pickled model)
        raise UserError(f"weights {path} are not a state dict: only a file of tensors that torch.save wrote is "
                        "loaded, e.g. torch.save(model.state_dict(), path)", field=WEIGHTS_FIELD) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"weights {path} are not a state dict: the file holds a {type(state).__name__}",
                        field=WEIGHTS_FIELD)
    if not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights {path} are not a state dict: the file holds a {type(state).__name__} without "
                        "tensors", field=WEIGHTS_FIELD)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()
        raise UserError(f"weights {path} do not fit the model: {' '.join(first[:2])}", field=WEIGHTS_FIELD) from None


def default_input_shape(name: str, model: nn.Module | None = None) -> tuple[int, ...] | None:
    """(C, H, W) a model expects when the scenario does not say; None for user models."""
    kind = model_kind(name)
    if kind == "zoo":
        return tuple(get_zoo_entry(name).input_shape)
    if kind == "torchvision":
        size = getattr(model, "image_size", None) if model is not None else None
        if size is None:
            size = 299 if name.startswith("inception") else 224
        return (3, int(size), int(size))
    return None


def trace_at(name: str, model: nn.Module, shape) -> "TracedModel":
    """:func:`~splitimpera.model.splits.trace` at ``shape``. Where the model's usual input shape
    is known (zoo and torchvision models) and the model cannot run at ``shape``, the error says
    so in the model's terms: the number of dimensions it takes, or its usual shape beside the
    error, instead of the first layer's complaint alone."""
    from .splits import normalize_input_shape, trace

    shape = normalize_input_shape(shape)
    try:
        return trace(model, shape)
    except UserError as e:
        own = default_input_shape(name, model)
        if own is None or tuple(shape) == tuple(own):
            raise
        usual = "x".join(map(str, own))
        if len(shape) != len(own):
            dims = " (C×H×W, without the batch)" if len(own) == 3 else " (without the batch)"
            raise UserError(f"the model takes {len(own)} dimensions{dims}, e.g. {usual}; got "
                            f"{'x'.join(map(str, shape))}", field=e.field, source=e.source) from None
        raise UserError(f"{e.message} (the model's usual input is {usual})", field=e.field, source=e.source) from None


def load_traced(scenario: "Scenario") -> "TracedModel":
    """The scenario's model, loaded (seeded) and traced at its input shape."""
    ms = scenario.model
    try:
        # Random initialisation (weights: none) is seeded without touching the caller's
        # global torch generator.
        with torch.random.fork_rng():
            torch.manual_seed(scenario.seed)
            model = load_model(ms.name, ms.weights, ms.num_classes, scenario.base_dir)
    except UserError as e:
        raise e.at(source=scenario.source, field="model.name") from None
    shape = tuple(ms.input_shape) if ms.input_shape else default_input_shape(ms.name, model)
    try:
        return trace_at(ms.name, model, shape)
    except UserError as e:
        raise e.at(source=scenario.source, field="model.input_shape") from None
