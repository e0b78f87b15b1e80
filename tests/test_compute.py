"""The per-layer roofline compute model against closed forms and hand counts."""

import logging

import numpy as np
import pytest
import torch.nn as nn

import splitimpera as si
from splitimpera.latency.compute import bound, compute_time_s, flop_only_time_s, node_time_s
from splitimpera.config.hardware import DeviceProfile

# 2 GFLOP/s peak = 1e9 multiply-adds/s at efficiency 1; 1 GB/s; 10 µs per layer.
DEV = DeviceProfile.model_validate({
    "name": "toy", "compute": {"peak_gflops": 2.0, "efficiency": {"conv": 1.0, "linear": 0.5, "other": 1.0},
                               "layer_overhead_us": 10.0},
    "memory": {"capacity_gb": 1.0, "bandwidth_gbps": 1.0}, "power": {"idle_w": 0.0, "active_w": 1.0},
})


class ConvReluLinear(nn.Module):
    """3×16×16 → conv 16ch (compute bound) → ReLU (memory bound) → flatten (a view) → linear
    (memory bound)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(16 * 16 * 16, 10)

    def forward(self, x):
        return self.fc(self.flat(self.relu(self.conv(x))))


# Hand counts, fp32, batch 1.
CONV_MACS = 16 * 16 * 16 * 3 * 9                       # 110,592
CONV_BYTES = 3 * 256 * 4 + 16 * 256 * 4 + 16 * 3 * 9 * 4  # in 3,072 + out 16,384 + weight 1,728
RELU_BYTES = 2 * 16 * 256 * 4                          # read and write 16,384 each
FC_MACS = 4096 * 10
FC_BYTES = 4096 * 4 + 10 * 4 + (4096 * 10 + 10) * 4     # in + out + weight and bias


@pytest.fixture(scope="module")
def toy():
    model = ConvReluLinear()
    return si.profile_nodes(model, (3, 16, 16)), si.profile_model(model, (3, 16, 16))


def test_roofline_closed_form_picks_the_right_bound(toy):
    nodes, prof = toy
    t = dict(zip(nodes.index, node_time_s(nodes, DEV)))
    b = dict(zip(nodes.index, bound(nodes, DEV)))
    # conv: 110,592 MACs at 1e9/s = 110.592 µs > 21.184 µs of traffic → compute bound.
    assert b["conv"] == "compute" and t["conv"] == pytest.approx(CONV_MACS / 1e9 + 10e-6, rel=1e-12)
    # ReLU: no FLOPs, 32,768 bytes at 1e9 B/s.
    assert b["relu"] == "memory" and t["relu"] == pytest.approx(RELU_BYTES / 1e9 + 10e-6, rel=1e-12)
    assert t["flat"] == pytest.approx(10e-6, rel=1e-12)  # a view: overhead only
    # fc: 40,960 MACs at 5e8/s = 81.92 µs < 180.304 µs to read its weights → memory bound.
    assert b["fc"] == "memory" and t["fc"] == pytest.approx(FC_BYTES / 1e9 + 10e-6, rel=1e-12)
    assert t["x"] == 0
    total = 120.592e-6 + 42.768e-6 + 10e-6 + 190.304e-6  # conv, relu, flatten, fc
    assert compute_time_s(prof, "head", DEV)["output"] == pytest.approx(total, rel=1e-12)
    assert compute_time_s(prof, "tail", DEV)["input"] == pytest.approx(total, rel=1e-12)
    assert compute_time_s(prof, "head", DEV)["relu"] == pytest.approx(120.592e-6 + 42.768e-6, rel=1e-12)
    # The flop-only model misses the memory-bound time entirely.
    assert flop_only_time_s(prof, "head", DEV)["output"] == pytest.approx(
        CONV_MACS / 1e9 + FC_MACS / 5e8 + 4 * 10e-6, rel=1e-12)


def test_a_faster_memory_makes_the_linear_compute_bound(toy):
    nodes, _ = toy
    fast = DEV.model_copy(update={"memory": DEV.memory.model_copy(update={"bandwidth_gbps": 100.0})})
    b = dict(zip(nodes.index, bound(nodes, fast)))
    t = dict(zip(nodes.index, node_time_s(nodes, fast)))
    assert b["fc"] == "compute" and t["fc"] == pytest.approx(FC_MACS / 5e8 + 10e-6, rel=1e-12)


class BytesNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)    # 2×8×8 → 4×8×8
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        y = self.relu(self.bn(self.conv(x)))
        return self.fc((y + y).flatten(1))


def test_per_node_bytes_match_hand_counts():
    nodes = si.profile_nodes(BytesNet(), (2, 8, 8))
    act_in, act = 2 * 64 * 4, 4 * 64 * 4
    expect = {  # node: (in_bytes, param_bytes, bytes_moved)
        "x": (0, 0, 0),
        "conv": (act_in, (4 * 2 * 9 + 4) * 4, act_in + act + (4 * 2 * 9 + 4) * 4),
        # weight, bias, running mean and var; the int64 num_batches_tracked is not read.
        "bn": (act, 4 * 4 * 4, 2 * act + 4 * 4 * 4),
        "relu": (act, 0, 2 * act),                       # in place: still reads and writes
        "add": (act, 0, 2 * act),                        # y + y reads y once
        "flatten": (act, 0, 0),                          # a view moves nothing
        "fc": (act, (256 * 5 + 5) * 4, act + 5 * 4 + (256 * 5 + 5) * 4),
    }
    got = {n: tuple(int(v) for v in nodes.loc[n, ["in_bytes", "param_bytes", "bytes_moved"]]) for n in expect}
    assert got == expect
    assert nodes.loc["fc", "out_bytes"] == 20


@pytest.fixture(scope="module")
def resnet():
    return si.profile_model(si.load_model("resnet18", "none"), (3, 32, 32))


def test_head_plus_tail_is_the_whole_model_for_every_split(resnet):
    dev = si.get_device("rpi4")
    head, tail = compute_time_s(resnet, "head", dev), compute_time_s(resnet, "tail", dev)
    whole = head["output"]
    assert whole > 0 and head["input"] == 0 and tail["output"] == 0
    np.testing.assert_allclose(head + tail, whole, rtol=1e-12)
    assert head.is_monotonic_increasing
    # Independently: the head is the sum of node times up to the split's graph position.
    nodes = si.profile_nodes(si.load_model("resnet18", "none"), (3, 32, 32))
    t = node_time_s(nodes, dev)
    for split in ["conv1", "layer2_0_relu_1", "layer4_1_relu_1", "fc"]:
        idx = resnet.loc[split, "index"]
        assert head[split] == pytest.approx(t[nodes["pos"].to_numpy() <= idx].sum(), rel=1e-12)


def test_row_selections_and_copies_keep_the_node_table(resnet, caplog):
    dev = si.get_device("jetson_nano")
    full = compute_time_s(resnet, "tail", dev)
    one = compute_time_s(resnet.loc[["layer3_0_relu_1"]], "tail", dev)
    assert one.iloc[0] == full["layer3_0_relu_1"]
    np.testing.assert_array_equal(compute_time_s(resnet.copy().iloc[::3], "tail", dev), full.iloc[::3])
    # Without the node table: the flop-only model, with a warning.
    bare = resnet.copy()
    bare.attrs.clear()
    with caplog.at_level(logging.WARNING, logger="splitimpera.latency.compute"):
        got = compute_time_s(bare, "head", dev)
    assert "flop-only" in caplog.text
    np.testing.assert_array_equal(got, flop_only_time_s(resnet, "head", dev))
    assert not np.allclose(got, compute_time_s(resnet, "head", dev))
