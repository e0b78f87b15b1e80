"""splitimpera: a design-space simulator for split computing.

Public API (see DESIGN.md §3)::

    import splitimpera as si
    sc = si.load_scenario("scenarios/demo.yaml", overrides={"network.uplink_mbps": 5})
    res = si.run(sc)            # res.table: one row per split, ranked
    res.save("results")         # results/<scenario name>/
"""

__version__ = "0.1.0"

from .accuracy.cui import CUIResult, cui  # noqa: E402
from .accuracy import bottlenecks as bottleneck  # noqa: E402,F401
from .accuracy.measure import AccuracyTable, fit_predictor, measure_accuracy  # noqa: E402
from .accuracy.bottlenecks import Bottleneck, get_bottleneck, list_bottlenecks, register_bottleneck  # noqa: E402
from .errors import UserError  # noqa: E402
from .accuracy.gradcam import layer_maps  # noqa: E402
from .model.loading import load_model  # noqa: E402
from .pipeline import Prepared, Result, evaluate, prepare, run  # noqa: E402
from .model.cost import profile_model, profile_nodes  # noqa: E402
from .config.hardware import (  # noqa: E402
    DeviceProfile, NetworkProfile, get_device, get_network, list_devices, list_networks,
    register_device, register_network,
)
from .config.scenario import Scenario, load_scenario  # noqa: E402
from .latency.simulation import SimResult, simulate  # noqa: E402
from .model.splits import SplitPoint, find_splits, split_model  # noqa: E402

__all__ = [
    "AccuracyTable", "fit_predictor", "measure_accuracy", "Bottleneck", "get_bottleneck", "list_bottlenecks",
    "register_bottleneck", "CUIResult", "cui", "layer_maps", "UserError", "load_model", "Prepared", "Result", "evaluate", "prepare", "run", "profile_model", "profile_nodes", "DeviceProfile",
    "NetworkProfile", "get_device", "get_network", "list_devices", "list_networks", "register_device",
    "register_network", "Scenario", "load_scenario", "SimResult", "simulate", "SplitPoint", "find_splits", "split_model",
]
