"""splitimpera: a design-space simulator for split computing.

Public API (see DESIGN.md §3)::

    import splitimpera as si
    sc = si.load_scenario("scenarios/demo.yaml", overrides={"network.uplink_mbps": 5})
    res = si.run(sc)            # res.table: one row per split, ranked
    res.save("results")         # results/<scenario name>/
"""

__version__ = "0.1.0"

from .curve import CUIResult, cui  # noqa: E402
from . import bottleneck  # noqa: E402,F401
from .accuracy import AccuracyTable, fit_predictor, measure_accuracy  # noqa: E402
from .bottleneck import Bottleneck, get_bottleneck, list_bottlenecks, register_bottleneck  # noqa: E402
from .errors import UserError  # noqa: E402
from .importance import layer_maps  # noqa: E402
from .models import load_model  # noqa: E402
from .pipeline import Prepared, Result, evaluate, prepare, run  # noqa: E402
from .profile import profile_model, profile_nodes  # noqa: E402
from .profiles import (  # noqa: E402
    DeviceProfile, NetworkProfile, get_device, get_network, list_devices, list_networks,
    register_device, register_network,
)
from .scenario import Scenario, load_scenario  # noqa: E402
from .sim import SimResult, simulate  # noqa: E402
from .splits import SplitPoint, find_splits, split_model  # noqa: E402

__all__ = [
    "AccuracyTable", "fit_predictor", "measure_accuracy", "Bottleneck", "get_bottleneck", "list_bottlenecks",
    "register_bottleneck", "CUIResult", "cui", "layer_maps", "UserError", "load_model", "Prepared", "Result", "evaluate", "prepare", "run", "profile_model", "profile_nodes", "DeviceProfile",
    "NetworkProfile", "get_device", "get_network", "list_devices", "list_networks", "register_device",
    "register_network", "Scenario", "load_scenario", "SimResult", "simulate", "SplitPoint", "find_splits", "split_model",
]
