"""Time this machine layer by layer and fit a device profile (``splitimpera calibrate``).

:mod:`.timing` runs and times the nodes (with the host probes and CPU pinning), :mod:`.fit`
fits the compute models and scores them on held-out models, :mod:`.profile` builds, checks
and writes the profile YAML, :mod:`.run` is the whole run.
"""

from .fit import RooflineFit, fit_roofline
from .profile import (default_name, implausible, once, plan_timing_profile, profile_from_fit, profile_output,
                      profile_with_timing, write_profile, write_timing_profile)
from .run import (DEFAULT_FIT_MODELS, DEFAULT_HOLDOUT_MODELS, DEFAULT_INPUT_SHAPE, SYNTHETIC_FIT_MODELS, Calibration,
                  calibrate, check_model_names, load_traced_models, model_list, render_calibration)
from .timing import (DEFAULT_REPEATS, DEFAULT_WARMUP, ModelTiming, TimedModel, cpu_model, pinned, time_model,
                     time_models, time_traced)

__all__ = [
    "RooflineFit", "fit_roofline", "default_name", "implausible", "once", "plan_timing_profile", "profile_from_fit",
    "profile_output", "profile_with_timing", "write_profile", "write_timing_profile", "DEFAULT_FIT_MODELS",
    "DEFAULT_HOLDOUT_MODELS", "DEFAULT_INPUT_SHAPE", "SYNTHETIC_FIT_MODELS", "Calibration", "calibrate",
    "check_model_names", "load_traced_models", "model_list", "render_calibration", "DEFAULT_REPEATS",
    "DEFAULT_WARMUP", "ModelTiming", "TimedModel", "cpu_model", "pinned", "time_model", "time_models", "time_traced",
]
