"""The real split run: wire format, bottleneck wire bytes, the server under bad clients, the
device's timing columns, and a short ``measure``."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch

import splitimpera as si
from splitimpera.accuracy.bottlenecks import CODERS, Autoencoder, TopChannels, get_bottleneck
from splitimpera.accuracy.bottlenecks.autoencoder import AutoencoderNet
from splitimpera.accuracy.bottlenecks.coders import decode_words
from splitimpera.errors import UserError
from splitimpera.runtime import wire
from splitimpera.runtime.device import run_device
from splitimpera.runtime.server import SplitServer, symbol_type

# ---------------------------------------------------------------------------------------------
# Bottleneck bytes on the wire


def _z(shape=(6, 5, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(3, *shape, generator=g)) * 3


@pytest.mark.parametrize("name", ["none", "fp16", "int8", "int4", "int2", "int1", "int3", "int5_channel", "int8_pct",
                                  "int2_channel_pct"])
@pytest.mark.parametrize("coder", CODERS)
def test_wire_bytes_are_the_measured_bytes_and_decode_exactly(name, coder):
    """decode(encode(z)) is the tensor roundtrip() gives the tail, bit for bit, and each
    sample's wire bytes are exactly what the accuracy stage counts (Payload.sizes)."""
    b = get_bottleneck(name)
    z = _z()
    out, payload = b.roundtrip(z)
    blobs = b.encode(z, coder)
    assert [len(x) for x in blobs] == payload.sizes(coder).tolist()
    assert torch.equal(b.decode(blobs, coder, tuple(z.shape[1:])), out)


def test_fitted_bottlenecks_decode_like_their_roundtrip():
    z = _z((8, 6, 6))
    top = TopChannels(0.5, "random")
    top.keep = torch.tensor([0, 3, 5, 6])
    top.fill = torch.full((8, 6, 6), 0.25)
    ae = Autoencoder()
    torch.manual_seed(0)
    ae.net = AutoencoderNet((8, 6, 6)).eval()
    for b in (top, ae):
        out, payload = b.roundtrip(z)
        for coder in CODERS:
            blobs = b.encode(z, coder)
            assert [len(x) for x in blobs] == payload.sizes(coder).tolist()
            torch.testing.assert_close(b.decode(blobs, coder, (8, 6, 6)), out, rtol=0, atol=1e-6)


@pytest.mark.parametrize("coder", CODERS)
def test_garbage_payloads_are_refused_not_decoded(coder):
    b = get_bottleneck("int4")
    good = b.encode(_z(), coder)[0]
    for bad in (good[:-3], good + b"\x01\x02", b"", b"\xff" * 9):
        with pytest.raises(ValueError):
            b.decode([bad], coder, (6, 5, 7))


def test_zstd_bomb_and_rle_run_lengths_are_bounded():
    import tracemalloc

    import zstandard

    bomb = zstandard.ZstdCompressor().compress(b"\0" * (50 << 20))  # 1.6 kB that claims 50 MB
    no_size = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * (50 << 20))
    tracemalloc.start()
    try:
        for blob in (bomb, no_size):
            with pytest.raises(ValueError):
                decode_words(blob, "zstd", 8, 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # refused on the stated size, before decompressing anything
    huge_run = bytes([7]) + bytes([0xFF] * 8 + [0x7F])  # symbol 7, run length 2^63-1
    with pytest.raises(ValueError):
        decode_words(huge_run, "rle", 8, 100)
    with pytest.raises(ValueError, match="length 0"):
        decode_words(bytes([7, 0]) * 1000, "rle", 8, 100)


# ---------------------------------------------------------------------------------------------
# Frames


def test_frames_round_trip_through_a_socket():
    a, b = socket.socketpair()
    req = {"split": "features_4", "bottleneck": "int8", "coder": "zstd", "dtype": "u8", "shape": (32, 16, 16),
           "want": wire.WANT_OUTPUT, "token": "s3cret"}
    rep = {"t_recv_ns": 1, "t_start_ns": 2, "t_end_ns": 3, "t_reply_ns": 4, "decode_s": 0.5, "batch": 3,
           "prediction": 7}
    frames = [(wire.REQUEST, 5, req, b"payload"), (wire.REPLY, 5, rep, b""), (wire.ERROR, 0, {"reason": "x"}, b""),
              (wire.PING, 1, {"t_send_ns": 123, "token": ""}, b""), (wire.PONG, 1, {"t_server_ns": -5}, b"")]
    for kind, rid, meta, body in frames:
        a.sendall(wire.encode_frame(kind, rid, meta, body))
    for kind, rid, meta, body in frames:
        f = wire.read_frame(b, 1 << 20)
        assert (f.kind, f.req_id, f.body) == (kind, rid, body)
        assert {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in f.meta.items()} == meta
    a.close()
    with pytest.raises(wire.ConnectionClosed) as e:
        wire.read_frame(b)
    assert not e.value.mid_frame
    b.close()


def _prefix(magic=wire.MAGIC, version=wire.VERSION, kind=wire.REQUEST, meta_len=0, body_len=0):
    return wire.PREFIX.pack(magic, version, kind, meta_len, 1, body_len)


@pytest.mark.parametrize("raw, reason", [
    (_prefix(magic=b"GET "), "bad_magic"),
    (_prefix(version=9), "bad_version"),
    (_prefix(kind=42), "unknown_kind"),
    (_prefix(meta_len=wire.MAX_META_BYTES + 1), "oversized"),
    (_prefix(body_len=(1 << 20) + 1), "oversized"),
    (_prefix(meta_len=2) + b"\xff\xff", "oversized"),  # a name claiming 65535 bytes
    (_prefix(meta_len=3) + b"\x00\x01\xff", "malformed"),  # not UTF-8 … and truncated
])
def test_malformed_frames_raise_before_reading_what_they_claim(raw, reason):
    a, b = socket.socketpair()
    a.sendall(raw)  # nothing follows: a reader that trusted the lengths would block here
    b.settimeout(5)
    with pytest.raises(wire.FrameError) as e:
        wire.read_frame(b, 1 << 20)
    assert e.value.reason == reason
    a.close()
    b.close()


# ---------------------------------------------------------------------------------------------
# Server and device


@pytest.fixture(scope="module")
def demo_sc(repo_root):
    return si.load_scenario(repo_root / "scenarios" / "demo.yaml", overrides={
        "workload.num_requests": 30, "workload.rate_hz": 100, "bottleneck.name": ["none", "int8"],
        "bottleneck.coder": "zstd"})


@pytest.fixture(scope="module")
def server(demo_sc):
    with SplitServer(demo_sc, ["input", "features_4", "features_9", "classifier_1", "output"]) as srv:
        yield srv


def _request(sock, rid, split, x, bn="none", coder="zstd", want=wire.WANT_OUTPUT, token=""):
    b = get_bottleneck(bn)
    body = b.encode(x, coder)[0]
    meta = {"split": split, "bottleneck": bn, "coder": coder, "dtype": symbol_type(b, split, tuple(x.shape[1:])),
            "shape": tuple(x.shape[1:]),
            "want": want, "token": token}
    sock.sendall(wire.encode_frame(wire.REQUEST, rid, meta, body))
    return wire.read_frame(sock, 1 << 20)


def test_server_tail_output_equals_the_full_model(demo_sc, server):
    """What the server computes from the decoded tensor equals model(x) (≤ 1e-5 for none)
    and tail(roundtrip(head(x))) under int8."""
    tm = server.tm
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, *tm.input_shape, generator=g)
    with torch.no_grad():
        full = tm.model(x).reshape(-1)
    s = socket.create_connection(server.address)
    for i, split in enumerate(["input", "features_4", "features_9", "classifier_1"]):
        head, tail = si.split_model(tm.model, split, tm.input_shape)
        with torch.no_grad():
            z = head(x)
            f = _request(s, i, split, z)
            got = torch.from_numpy(np.frombuffer(f.body, dtype="<f4").copy())
            torch.testing.assert_close(got, full, rtol=0, atol=1e-5)
            assert f.meta["prediction"] == int(full.argmax())
            f8 = _request(s, 100 + i, split, z, bn="int8")
            want = tail(get_bottleneck("int8").roundtrip(z)[0]).reshape(-1)
            torch.testing.assert_close(torch.from_numpy(np.frombuffer(f8.body, dtype="<f4").copy()), want,
                                       rtol=0, atol=1e-5)
    s.close()


def _bad_clients(address):
    """Each misbehaves in its own way; returns the error replies they got (None: closed without one)."""
    out = {}

    def talk(name, data, close_early=False):
        s = socket.create_connection(address)
        s.settimeout(10)
        s.sendall(data)
        if close_early:
            s.close()
            out[name] = None
            return
        try:
            f = wire.read_frame(s, 1 << 20)
            out[name] = f.meta.get("reason")
        except (wire.ConnectionClosed, OSError):
            out[name] = None
        s.close()

    good = wire.encode_frame(wire.REQUEST, 1, {"split": "features_4", "bottleneck": "none", "coder": "raw",
                                               "dtype": "f32", "shape": (16, 16, 16), "want": 0, "token": ""},
                             b"\0" * (4 * 16 * 16 * 16))
    talk("killed_mid_frame", good[: len(good) // 2], close_early=True)
    talk("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
    talk("oversized", _prefix(body_len=2**32 - 1))
    unknown = wire.encode_frame(wire.REQUEST, 2, {"split": "no_such_layer", "bottleneck": "none", "coder": "raw",
                                                  "dtype": "f32", "shape": (1,), "want": 0, "token": ""}, b"\0" * 4)
    talk("unknown_split", unknown)
    short = wire.encode_frame(wire.REQUEST, 3, {"split": "features_4", "bottleneck": "none", "coder": "raw",
                                                "dtype": "f32", "shape": (16, 16, 16), "want": 0, "token": ""},
                              b"\0" * 100)
    talk("bad_payload", short)
    return out


def test_bad_clients_close_only_their_connection(demo_sc, server):
    before = dict(server.stats)
    results = {}
    good = threading.Thread(target=lambda: results.update(run=run_device(demo_sc, server.address, "features_9",
                                                                         bottleneck="int8")))
    good.start()
    errors = _bad_clients(server.address)
    good.join(60)
    df = results["run"].requests
    assert df["answered"].all() and len(df) == 30  # the well-behaved device was served throughout
    assert errors["garbage"].startswith("bad_magic")
    assert errors["oversized"].startswith("oversized")
    assert errors["unknown_split"].startswith("unknown_split")
    assert errors["bad_payload"].startswith("bad_payload")
    deadline = time.monotonic() + 5
    while server.stats["truncated"] <= before.get("truncated", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    for reason in ("truncated", "bad_magic", "oversized", "unknown_split", "bad_payload"):
        assert server.stats[reason] == before.get(reason, 0) + 1, reason
    # …and the server still answers new connections.
    assert run_device(demo_sc, server.address, "input", num_requests=5).requests["answered"].all()


def test_device_columns_add_up_and_follow_the_simulated_arrivals(demo_sc, server):
    run = run_device(demo_sc, server.address, "features_4", bottleneck="int8")
    df = run.requests
    assert df["answered"].all() and (df["frame_lost"] == 0).all()
    parts = df[["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s"]].sum(axis=1)
    np.testing.assert_allclose(df["latency_s"], parts, rtol=0, atol=1e-9)
    # One machine, one monotonic clock: the estimated offset is 0 within half the sync round trip.
    assert abs(run.clock_offset_s) <= run.sync_rtt_s / 2 + 1e-6
    assert (df[["device_wait_s", "device_compute_s", "server_wait_s", "server_compute_s"]] >= 0).all().all()
    assert (df["uplink_s"] > -run.sync_rtt_s).all()
    b = get_bottleneck("int8")
    assert df["bytes_sent"].max() <= b.nominal_bytes((16, 16, 16)) + 64  # zstd on int8 codes: never much larger
    # The device's schedule is the simulation's (same seed): same arrival times.
    sim = si.simulate(demo_sc, ["features_4"]).requests
    sim = sim[sim["bottleneck"] == "int8"]
    kept = df["t_arrival_s"].to_numpy()[-len(sim):]
    np.testing.assert_allclose(kept, sim["t_arrival_s"].to_numpy(), rtol=0, atol=1e-12)


def test_result_at_device_times_the_downlink(demo_sc, server):
    sc = demo_sc.model_copy(update={"workload": demo_sc.workload.model_copy(update={"result_at": "device"})})
    df = run_device(sc, server.address, "classifier_1", num_requests=10).requests
    assert df["answered"].all()
    assert (df["downlink_s"] > 0).all()
    parts = df[["device_wait_s", "device_compute_s", "uplink_s", "server_wait_s", "server_compute_s",
                "downlink_s"]].sum(axis=1)
    np.testing.assert_allclose(df["latency_s"], parts, rtol=0, atol=1e-9)  # the components tile the latency
    assert (df["prediction"] >= 0).all()


def test_token_is_required_off_loopback_and_checked(demo_sc):
    with pytest.raises(UserError, match="--token"):
        SplitServer(demo_sc, ["features_4"], host="0.0.0.0")
    with pytest.raises(UserError, match="5 characters; give at least 16"):
        SplitServer(demo_sc, ["features_4"], token="right")
    right = "right-and-long-enough"
    with SplitServer(demo_sc, ["features_4"], token=right, traced=None) as srv:
        with pytest.raises(UserError, match="refused.*wrong token") as e:
            run_device(demo_sc, srv.address, "features_4", token="wrong", num_requests=2)
        assert e.value.field == "--token"
        with pytest.raises(UserError, match="refused.*this server requires a token"):
            run_device(demo_sc, srv.address, "features_4", token=None, num_requests=2)
        assert srv.stats["bad_token"] == 2
        assert run_device(demo_sc, srv.address, "features_4", token=right, num_requests=3).requests[
            "answered"].all()


def test_a_token_sent_to_a_server_without_one_is_refused_saying_so(demo_sc):
    """Not "wrong or missing token": the server takes none, and the device is told to drop it."""
    with SplitServer(demo_sc, ["features_4"]) as srv:
        with pytest.raises(UserError, match="this server takes no token .*drop --token") as e:
            run_device(demo_sc, srv.address, "features_4", token="s3cret", num_requests=2)
        assert e.value.field == "--token" and srv.stats["bad_token"] == 1


def test_learning_bottlenecks_are_refused_in_one_line(repo_root):
    sc = si.load_scenario(repo_root / "scenarios" / "demo.yaml", overrides={"bottleneck.name": "autoencoder"})
    with pytest.raises(UserError, match="learns at each split"):
        SplitServer(sc, ["features_4"])


def test_dynamic_batching_groups_queued_requests(demo_sc):
    sc = demo_sc.model_copy(update={"workload": demo_sc.workload.model_copy(
        update={"max_batch": 4, "batch_timeout_ms": 50.0, "num_devices": 4, "rate_hz": 20})})
    # Traced once, before the threads: torch.fx patches module calls process-wide while tracing.
    from splitimpera.model.loading import load_traced

    tm = load_traced(sc)
    with SplitServer(sc, ["features_9"]) as srv:
        runs = [None] * 4

        def go(k):
            runs[k] = run_device(sc, srv.address, "features_9", device_id=k, num_requests=8, traced=tm)
        ts = [threading.Thread(target=go, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
    df = pd.concat([r.requests for r in runs])
    assert df["answered"].all()
    assert df["batch"].max() > 1  # four devices, 50 ms window: some batches hold several
    assert df["batch"].max() <= 4


# ---------------------------------------------------------------------------------------------
# Measured mode and the measure command


def test_measured_columns_replace_the_model_in_both_engines(prof, demo_scenario):
    from splitimpera.latency.analytic import analytic_latency
    from splitimpera.latency.compute import measured_column
    from splitimpera.latency.engine import point_frame
    from splitimpera.latency.simulation import simulate

    sc = demo_scenario(**{"workload.stochastic_network": False, "workload.num_requests": 20})
    frame = point_frame(prof).iloc[[0, 5, 9]].copy()
    frame[measured_column("head")] = [0.001, 0.002, 0.003]
    frame[measured_column("tail")] = [0.004, 0.005, 0.006]
    ana = analytic_latency(frame, sc)
    np.testing.assert_allclose(ana["device_compute_s"], [0.001, 0.002, 0.003])
    np.testing.assert_allclose(ana["server_compute_s"], [0.004, 0.005, 0.006])
    req = simulate(sc, frame).requests
    np.testing.assert_allclose(req.groupby("split", sort=False)["device_compute_s"].mean().to_numpy(),
                               [0.001, 0.002, 0.003])


@pytest.mark.slow
def test_measure_runs_processes_and_simulates_the_same_requests(repo_root, tmp_path):
    """A short `measure` (one split, few requests, no namespace): real processes, a fidelity row."""
    from splitimpera.cli import main

    rc = main(["measure", str(repo_root / "scenarios" / "demo.yaml"), "--splits", "features_9", "--requests", "20",
               "--set", "workload.rate_hz=50", "-o", str(tmp_path), "-q", "--profile", "laptop_x86"])
    assert rc == 0
    folder = tmp_path / "demo"
    both = pd.read_csv(folder / "fidelity.csv")
    assert list(both["split"]) == ["features_9"] * 3 and list(both["mode"]) == ["measured", "overhead", "predicted"]
    # The overhead mode: the timed sides plus the per-request overhead the calibration requests measured.
    fit = json.loads((folder / "fidelity.json").read_text())["setup"]["overhead"]
    assert {"device", "server", "message_floor_ms"} <= set(fit) and "measured by `measure`" in fit["server"]["source"]
    # Predicted mode is the roofline of the named profile on both sides.
    from splitimpera.latency.compute import compute_time_s

    prof = si.profile_model(si.load_model("digits_cnn", "none"), (1, 32, 32)).loc[["features_9"]]
    laptop = si.get_device("laptop_x86")
    pred = both[both["mode"] == "predicted"].iloc[0]
    assert pred["sim_device_compute_s"] == pytest.approx(float(compute_time_s(prof, "head", laptop).iloc[0]))
    assert pred["sim_server_compute_s"] == pytest.approx(float(compute_time_s(prof, "tail", laptop).iloc[0]))
    fid = both[both["mode"] == "measured"].reset_index(drop=True)
    meas = pd.read_parquet(folder / "measured.parquet")
    sim = pd.read_parquet(folder / "simulated.parquet")
    sim = sim[sim["mode"] == "measured"]
    timings = json.loads((folder / "fidelity.json").read_text())["timings"][0]
    assert fid["sim_device_compute_s"].iloc[0] == pytest.approx(timings["head_s"])  # measured mode: the timed sides
    assert fid["sim_server_compute_s"].iloc[0] == pytest.approx(timings["tail_s"])
    assert len(meas) == 18 and meas["answered"].all()  # 20 less the 10 % warm-up
    # The simulation replayed the devices' arrival times, request for request.
    np.testing.assert_allclose(meas["t_arrival_s"].to_numpy(), sim["t_arrival_s"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(fid["meas_latency_mean_s"], meas["latency_s"].mean())
    np.testing.assert_allclose(fid["sim_latency_mean_s"], sim["latency_s"].mean())
    assert fid["err_latency_mean_s"].iloc[0] == pytest.approx(
        (sim["latency_s"].mean() - meas["latency_s"].mean()) / meas["latency_s"].mean())
    assert (folder / "scenario.yaml").is_file()
    # `report` on the measure folder (or the -o folder above it) shows the comparison.
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html"), "--png"]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "the real split run against the simulation" in page and "features_9" in page
    assert f"{fid['meas_latency_mean_s'].iloc[0] * 1e3:.3g}" in page
    assert page.count("data:image/png;base64,") == 1 and "predicted compute" in page
    assert (tmp_path / "r_figures" / "demo_fidelity.png").stat().st_size > 1000


def test_measure_bad_input_is_one_line(repo_root, capsys):
    from splitimpera.cli import main

    demo = str(repo_root / "scenarios" / "demo.yaml")
    assert main(["measure", demo, "--server-load", "1.5"]) == 2
    assert "--server-load" in capsys.readouterr().err
    assert main(["measure", demo, "--splits", "nope", "--requests", "2"]) == 2
    assert "nope" in capsys.readouterr().err
    for args, field in ((["--cores", "0,0"], "--cores"), (["--cores", "0,99"], "--cores"),
                        (["--requests", "0"], "--requests"), (["--threads", "-1"], "--threads"),
                        (["--profile", "no_such_board"], "--profile")):
        assert main(["measure", demo, "--splits", "input", *args]) == 2
        assert field in capsys.readouterr().err


def test_a_skewed_server_clock_is_corrected(demo_sc):
    """The server's clock 5 s ahead: the device's estimate finds the skew and the components
    stay what they are (a sign error would put ±5 s into the uplink)."""
    skew = 5_000_000_000
    with SplitServer(demo_sc, ["features_9"], clock_ns=lambda: time.monotonic_ns() + skew) as srv:
        run = run_device(demo_sc, srv.address, "features_9", num_requests=10)
    df = run.requests
    assert run.clock_offset_s == pytest.approx(skew / 1e9, abs=run.sync_rtt_s / 2 + 1e-6)
    assert df["answered"].all()
    assert (df["uplink_s"] > -run.sync_rtt_s).all() and (df["uplink_s"] < 0.5).all()
    assert (df["latency_s"] < 1.0).all()


def test_requests_the_server_refuses_are_a_user_error_with_its_reason(demo_sc):
    """A server that refuses the device's bottleneck or split closes the connection: nothing
    can be measured, so the device says why (the server's reason, the option to look at)
    instead of returning every request as lost."""
    only_none = demo_sc.model_copy(update={"bottleneck": demo_sc.bottleneck.model_copy(update={"name": "none"})})
    with SplitServer(only_none, ["features_9"]) as srv:
        with pytest.raises(UserError, match="refused the requests: unknown_bottleneck: bottleneck 'int8'") as e:
            run_device(demo_sc, srv.address, "features_9", bottleneck="int8", num_requests=12)
        assert e.value.field == "--bottleneck" and srv.stats["unknown_bottleneck"] == 1
        with pytest.raises(UserError, match="unknown_split: split 'features_4' is not served here "
                                            r"\(serving features_9\)") as e:
            run_device(demo_sc, srv.address, "features_4", bottleneck="none", num_requests=12)
        assert e.value.field == "--split" and srv.stats["unknown_split"] == 1


def test_device_command_against_a_server_without_the_split_exits_2_with_the_reason(demo_sc, repo_root, capsys):
    from splitimpera.cli import main

    with SplitServer(demo_sc, ["features_9"]) as srv:
        host, port = srv.address
        rc = main(["device", str(repo_root / "scenarios" / "demo.yaml"), "--server", f"{host}:{port}",
                   "--split", "features_4", "--set", "workload.num_requests=5"])
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert rc == 2 and cap.out == "" and len(lines) == 1, cap
    assert lines[0].startswith("error: device: --split: ") and "features_4' is not served here" in lines[0]


def test_a_failing_batch_is_answered_with_an_error_and_the_workers_live_on(demo_sc):
    sc = demo_sc.model_copy(update={"workload": demo_sc.workload.model_copy(
        update={"server_workers": 2, "max_batch": 4, "batch_timeout_ms": 5.0})})

    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("out of memory (simulated)")

    with SplitServer(sc, ["features_9", "classifier_1"]) as srv:
        srv.tails["classifier_1"] = Broken()
        bad = run_device(sc, srv.address, "classifier_1", num_requests=6, timeout_s=5)
        assert not bad.requests["answered"].any()
        assert srv.stats["server_error"] >= 1
        good = run_device(sc, srv.address, "features_9", num_requests=20)
        assert good.requests["answered"].all()
