"""Big simulations: their size is known before they start, a progress bar
follows them on a terminal, and one beyond ``analysis.max_simulated_requests`` is refused
in one line before any simulating."""

import io
import sys
import tracemalloc

import pytest

import splitimpera as si
from splitimpera.cli import main
from splitimpera.latency import simulation
from splitimpera.latency.engine import point_frame

# Gigabit Ethernet at 1 Hz: nothing is overloaded, every point is simulated.
STABLE = {"data.source": "none", "qos.min_accuracy": None, "network": "ethernet", "workload.rate_hz": 1}


@pytest.fixture(scope="module")
def prepared(demo_scenario):
    return si.prepare(demo_scenario(**STABLE))


class _Bar:
    def __init__(self, size):
        self.size, self.done, self.closed = size, 0, False

    def update(self, n):
        self.done += n

    def close(self):
        self.closed = True


def test_size_is_what_is_simulated_and_the_bar_sees_every_request(prepared, demo_scenario):
    sc = demo_scenario(**STABLE, **{"workload.num_devices": 3, "workload.num_requests": 20})
    bars = []
    res = si.evaluate(sc, prepared, progress=lambda size: bars.append(_Bar(size)) or bars[-1])
    (bar,) = bars
    n_points = len(res.table)
    assert (bar.size.points, bar.size.devices, bar.size.requests) == (n_points, 3, 20)
    # Warm-up drops floor(0.1 × 20) = 2 of each device's requests from the table.
    assert bar.size.total == n_points * 3 * 20 == len(res.sim.requests) * 20 // 18
    assert bar.done == bar.size.total and bar.closed


def test_memory_estimate_bounds_the_measured_peak(prepared, demo_scenario):
    sc = demo_scenario(**STABLE, **{"workload.num_devices": 10, "workload.num_requests": 50})
    frame = point_frame(prepared.profile, prepared.points.table)
    size = simulation.simulation_size(sc, len(frame))
    tracemalloc.start()
    try:
        simulation.simulate(sc, frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= size.memory_bytes, f"{peak / size.total:.0f} B per request measured"


def test_a_run_beyond_the_limit_is_refused_before_simulating(monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("simulated although refused")

    monkeypatch.setattr(simulation, "simulate_point", boom)
    args = ["simulate", "demo", *(f"--set={k}={'null' if v is None else v}" for k, v in STABLE.items())]
    # 100,000 devices each asking once in 3 hours: nothing is overloaded, all 22 points would run.
    rc = main([*args, "--set", "workload.num_devices=100000", "--set", "workload.rate_hz=1e-4"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "workload.num_devices:" in err and "440,000,000 requests" in err
    assert "analysis.engine=analytic" in err and "analysis.max_simulated_requests (2,000,000)" in err
    # The limit is the scenario's: the same run below it goes ahead (here 22 × 2 × 200).
    monkeypatch.undo()
    assert main([*args, "--set", "workload.num_devices=2", "--set", "analysis.max_simulated_requests=8800"]) == 0
    assert main([*args, "--set", "workload.num_devices=2", "--set", "analysis.max_simulated_requests=8799"]) == 2


def test_cli_states_a_long_simulation_and_draws_a_bar_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(simulation, "REQUESTS_PER_S", 100)  # so that a small run counts as long
    err = io.StringIO()
    err.isatty = lambda: True
    monkeypatch.setattr(sys, "stderr", err)
    args = ["simulate", "demo", *(f"--set={k}={'null' if v is None else v}" for k, v in STABLE.items()),
            "--set", "workload.num_requests=30"]
    assert main(args) == 0
    text = err.getvalue()
    assert "simulating 660 requests (22 design points × 1 device × 30 each), about 7 s" in text
    assert "simulating:" in text and "/660 [" in text  # tqdm's bar, counting requests
    err.isatty = lambda: False  # not a terminal (a log file, a pipe): the size line only
    err.seek(0), err.truncate()
    assert main(args) == 0
    assert "simulating 660 requests" in err.getvalue() and "/660 [" not in err.getvalue()
