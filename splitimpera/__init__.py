"""splitimpera: a design-space simulator for split computing.

Public API (the README lists it whole)::

    import splitimpera as si
    sc = si.load_scenario("scenarios/demo.yaml", overrides={"bottleneck.name": ["none", "int8", "int4"]})
    res = si.run(sc)            # res.table: one row per design point (split, bottleneck), ranked jointly
    res.recommended             # DesignPoint(split=…, bottleneck=…)
    res.save("results")         # results/<scenario name>/

The package is laid out by pipeline stage, each importing only the ones before it:
``config`` → ``data`` → ``model`` → ``accuracy`` → ``latency`` → ``qos`` → ``report`` →
``results`` → ``pipeline`` (wiring) → front ends (``cli``, ``dashboard``, ``calibrate``).
"""

from ._version import __version__  # noqa: F401

from .errors import UserError  # noqa: E402
from .config.hardware import DeviceProfile, NetworkProfile  # noqa: E402
from .config.profile_registry import (  # noqa: E402
    get_device, get_network, list_devices, list_networks, register_device, register_network,
)
from .config.scenario import Scenario, load_scenario  # noqa: E402
from .model.loading import load_model  # noqa: E402
from .model.splits import SplitPoint, find_splits, split_model  # noqa: E402
from .model.cost import profile_model, profile_nodes  # noqa: E402
from .accuracy import bottlenecks as bottleneck  # noqa: E402,F401  (si.bottleneck.get_bottleneck …)
from .accuracy.bottlenecks import Bottleneck, get_bottleneck, list_bottlenecks, register_bottleneck  # noqa: E402
from .accuracy.gradcam import layer_maps  # noqa: E402
from .accuracy.cui import CUIResult, cui  # noqa: E402
from .accuracy.evaluate import AccuracyTable, fit_predictor, measure_accuracy  # noqa: E402
from .accuracy.design_points import DesignPoints, analyze  # noqa: E402
from .latency.simulation import SimResult  # noqa: E402
from .latency.transport import transfer_latency_s  # noqa: E402
from .latency.compute import predict_latency_s  # noqa: E402
from .results import DesignPoint, Result, load_result  # noqa: E402
from .prepared import Prepared  # noqa: E402
from .pipeline import evaluate, prepare, run, simulate  # noqa: E402
from .sweep import SweepResult, sweep  # noqa: E402

__all__ = [
    "UserError", "DeviceProfile", "NetworkProfile", "get_device", "get_network", "list_devices", "list_networks",
    "register_device", "register_network", "Scenario", "load_scenario", "load_model", "SplitPoint", "find_splits",
    "split_model", "profile_model", "profile_nodes", "Bottleneck", "get_bottleneck", "list_bottlenecks",
    "register_bottleneck", "layer_maps", "CUIResult", "cui", "AccuracyTable", "fit_predictor", "measure_accuracy",
    "DesignPoints", "analyze", "SimResult", "DesignPoint", "Result", "load_result", "Prepared", "evaluate", "prepare", "run",
    "simulate", "transfer_latency_s", "predict_latency_s", "SweepResult", "sweep",
]
