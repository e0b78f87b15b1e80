"""``calibrate``'s overhead fit recovers a known per-request overhead, per-byte cost,
service-time spread and dispatch delay from synthetic timings of a real run."""

import numpy as np
import pytest

from splitimpera.calibrate.overhead import fit_overhead
from splitimpera.config.hardware import Overhead


def test_fit_recovers_a_known_overhead_from_synthetic_timings():
    rng = np.random.default_rng(7)
    fixed_us, per_byte_us, cv, dispatch_us = 180.0, 0.004, 0.12, 65.0
    payload = np.array([56, 600, 4_096, 32_768, 200_000, 800_000], dtype=float)
    compute = np.array([1.2e-3, 3e-3, 0.4e-3, 8e-3, 20e-3, 2e-3])
    true = compute + (fixed_us + per_byte_us * payload) * 1e-6
    # The run's CPU per request: the truth with 2 % timing noise, and one point disturbed
    # (another process took the core for a while) that a least-squares line would follow.
    cpu = true * (1 + 0.02 * rng.standard_normal(len(true)))
    cpu[2] += 2e-3
    s2 = np.log1p(cv ** 2)
    service = [t * np.exp(np.sqrt(s2) * rng.standard_normal(400) - s2 / 2) for t in true]
    waits = rng.gamma(9.0, dispatch_us / 9.0, 300) * 1e-6
    got = fit_overhead(payload, cpu, compute, service, waits, source="synthetic")
    o = Overhead(**got)  # a valid profile section
    assert o.request_us == pytest.approx(fixed_us, rel=0.15)
    assert o.per_byte_us == pytest.approx(per_byte_us, rel=0.05)
    assert o.service_cv == pytest.approx(cv, rel=0.1)
    assert o.dispatch_us == pytest.approx(dispatch_us, rel=0.1)
    assert o.source == "synthetic"


def test_one_payload_size_gives_the_fixed_part_only_and_the_device_no_dispatch():
    got = fit_overhead([512, 512], [1.3e-3, 1.31e-3], [1e-3, 1e-3], [np.full(10, 1e-3)])
    assert got["request_us"] == pytest.approx(305, rel=0.02) and got["per_byte_us"] == 0.0
    assert got["service_cv"] == 0.0 and "dispatch_us" not in got
