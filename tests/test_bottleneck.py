"""Bottlenecks and lossless coders (`splitimpera.accuracy.bottlenecks`), checked against independent
references: closed forms, numpy re-implementations, zstandard, np.packbits/unpackbits."""

import fnmatch
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import splitimpera.accuracy.bottlenecks as bn
from splitimpera.accuracy.bottlenecks import (
    Autoencoder,
    Bottleneck,
    FitContext,
    Fp16,
    Payload,
    Quantize,
    TopChannels,
    get_bottleneck,
    list_bottlenecks,
    register_bottleneck,
    rle_decode,
    rle_encode,
    rle_sizes,
)
from splitimpera.accuracy.bottlenecks.autoencoder import AutoencoderNet
from splitimpera.errors import UserError

DEFAULTS = ["none", "fp16",
            "int8", "int4", "int2", "int8_channel", "int4_channel", "int2_channel", "int8_pct", "int4_pct", "int2_pct",
            "top50_gradcam", "top50_random", "top25_gradcam", "top25_random", "autoencoder"]


def _varint_len(n: int) -> int:
    """LEB128 bytes of a positive integer, from its bit length."""
    return max(1, -(-n.bit_length() // 7))


def _rle_size_ref(row, bits: int) -> int:
    """Bytes of a run-length code (symbol in ceil(bits/8) bytes + LEB128 run length), by groupby."""
    width = max(1, -(-bits // 8))
    return sum(width + _varint_len(len(list(g))) for _, g in itertools.groupby(row.tolist()))


def _pack_ref(codes: np.ndarray, bits: int) -> bytes:
    """Codes (n,) as a big-endian bit string of `bits` bits each, zero-padded to whole bytes."""
    s = "".join(format(int(c), f"0{bits}b") for c in codes)
    s += "0" * (-len(s) % 8)
    return bytes(int(s[i:i + 8], 2) for i in range(0, len(s), 8))


# --------------------------------------------------------------------------------------------
# Registry


def test_defaults_are_registered_in_order():
    names = list_bottlenecks()
    assert [n for n in names if n in DEFAULTS] == DEFAULTS
    pct = list_bottlenecks("int*_pct")
    assert all(fnmatch.fnmatch(n, "int*_pct") for n in pct)
    assert [n for n in pct if n in DEFAULTS] == ["int8_pct", "int4_pct", "int2_pct"]
    assert [n for n in list_bottlenecks("top*") if n in DEFAULTS] == ["top50_gradcam", "top50_random", "top25_gradcam",
                                                                       "top25_random"]
    for n in DEFAULTS:
        b = get_bottleneck(n)
        assert isinstance(b, Bottleneck) and b.name == n


def test_registered_names_build_the_right_classes():
    assert type(get_bottleneck("none")) is Bottleneck
    assert isinstance(get_bottleneck("fp16"), Fp16)
    q = get_bottleneck("int4_channel")
    assert (q.bits, q.per_channel, q.percentile) == (4, True, None)
    q = get_bottleneck("int2_pct")
    assert (q.bits, q.per_channel, q.percentile) == (2, False, 99.9)
    t = get_bottleneck("top25_random")
    assert isinstance(t, TopChannels) and (t.fraction, t.selection, t.needs_scores) == (0.25, "random", False)
    t = get_bottleneck("top50_gradcam")
    assert (t.fraction, t.selection, t.needs_scores, t.needs_fit) == (0.5, "gradcam", True, True)
    assert isinstance(get_bottleneck("autoencoder"), Autoencoder)
    # Fresh instances: fitting one never leaks into the next.
    assert get_bottleneck("top50_gradcam") is not get_bottleneck("top50_gradcam")


def test_unknown_name_is_a_user_error_naming_the_known_ones():
    with pytest.raises(UserError) as e:
        get_bottleneck("jpeg90")
    msg = str(e.value)
    assert "jpeg90" in msg
    for n in ("none", "fp16", "int8_channel", "top25_random", "autoencoder"):
        assert n in msg


@pytest.mark.parametrize("name, bits, per_channel, pct", [
    ("int3", 3, False, None), ("int1", 1, False, None), ("int5_channel_pct", 5, True, 99.9),
    ("int7_channel", 7, True, None), ("int6_pct", 6, False, 99.9),
])
def test_parametric_quantisers_parse(name, bits, per_channel, pct):
    q = get_bottleneck(name)
    assert isinstance(q, Quantize)
    assert (q.name, q.bits, q.per_channel, q.percentile) == (name, bits, per_channel, pct)


@pytest.mark.parametrize("name, fraction, selection", [
    ("top10_random", 0.10, "random"), ("top1_gradcam", 0.01, "gradcam"), ("top100_random", 1.0, "random"),
    ("top75_gradcam", 0.75, "gradcam"),
])
def test_parametric_top_channels_parse(name, fraction, selection):
    t = get_bottleneck(name)
    assert isinstance(t, TopChannels)
    assert t.name == name and t.fraction == pytest.approx(fraction) and t.selection == selection
    assert t.needs_scores == (selection == "gradcam")


@pytest.mark.parametrize("name", ["top0_gradcam", "top101_random", "top05_random", "top50_pca", "int9", "int0",
                                  "int8_pct_channel", "INT8", "int8 "])
def test_bad_parametric_names_are_rejected(name):
    with pytest.raises(UserError, match="unknown bottleneck"):
        get_bottleneck(name)


def test_quantize_and_top_channels_validate_their_arguments():
    with pytest.raises(UserError):
        Quantize(9)
    with pytest.raises(UserError):
        Quantize(0)
    with pytest.raises(UserError):
        TopChannels(0.0)
    with pytest.raises(UserError):
        TopChannels(1.5)
    with pytest.raises(UserError):
        TopChannels(0.5, "pca")


def test_register_duplicate_raises_and_overwrite_replaces():
    name = "_test_bottleneck_registry_entry"
    assert name not in bn._REGISTRY
    try:
        register_bottleneck(name, lambda: Quantize(3))
        assert list_bottlenecks()[-1] == name
        b = get_bottleneck(name)
        assert isinstance(b, Quantize) and b.bits == 3 and b.name == name
        with pytest.raises(ValueError, match=name):
            register_bottleneck(name, Fp16)
        assert get_bottleneck(name).bits == 3  # the failed registration changed nothing
        register_bottleneck(name, Fp16, overwrite=True)
        b = get_bottleneck(name)
        assert isinstance(b, Fp16) and b.name == name
        assert list_bottlenecks().count(name) == 1
        with pytest.raises(ValueError):  # a default is protected too
            register_bottleneck("none", Fp16)
    finally:
        bn._REGISTRY.pop(name, None)
    assert name not in list_bottlenecks()
    assert type(get_bottleneck("none")) is Bottleneck


# --------------------------------------------------------------------------------------------
# Quantisation


def _minmax_ref(z: np.ndarray, bits: int, per_channel: bool):
    """Per-sample (and per-channel) lo and scale, float32, computed with numpy."""
    g = z.reshape(len(z), z.shape[1], -1) if per_channel else z.reshape(len(z), 1, -1)
    lo, hi = g.min(-1, keepdims=True), g.max(-1, keepdims=True)
    scale = (hi - lo) / np.float32(2 ** bits - 1)
    return g, lo, scale


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_channel", [False, True])
def test_minmax_error_is_within_half_a_step(bits, per_channel):
    rng = np.random.default_rng(bits)
    z = rng.normal(size=(3, 4, 5, 7)).astype(np.float32)
    z *= np.array([0.1, 1.0, 10.0], dtype=np.float32)[:, None, None, None]  # samples with different ranges
    z[:, 2] += 5.0
    out, payload = Quantize(bits, per_channel=per_channel).roundtrip(torch.from_numpy(z))
    g, lo, scale = _minmax_ref(z, bits, per_channel)
    err = np.abs(out.numpy().reshape(g.shape) - g)
    assert np.all(err <= scale / 2 * (1 + 1e-4) + 1e-6)
    # Exact reconstruction from the codes: out = lo + code * scale.
    codes = payload.words.reshape(g.shape).astype(np.float32)
    np.testing.assert_allclose(out.numpy().reshape(g.shape), lo + codes * scale, rtol=1e-6, atol=1e-6)
    # At most 2^b levels; the min and max of each group land on the first and last code.
    levels = 2 ** bits
    assert payload.words.dtype == np.uint8 and payload.words.max() <= levels - 1
    for group in payload.words.reshape(g.shape[0] * g.shape[1], -1):
        assert len(np.unique(group)) <= levels
        assert group.min() == 0 and group.max() == levels - 1
    assert payload.bits == bits
    assert payload.side_bytes == 8 * (z.shape[1] if per_channel else 1)


def test_error_bound_holds_with_a_dequantised_reference():
    """int8 per tensor: the dequantised tensor equals a numpy quantise-dequantise."""
    rng = np.random.default_rng(0)
    z = rng.gamma(2.0, size=(4, 6, 3, 3)).astype(np.float32)
    out, payload = Quantize(8).roundtrip(torch.from_numpy(z))
    g, lo, scale = _minmax_ref(z, 8, False)
    q = np.clip(np.round((g - lo) / scale), 0, 255)
    np.testing.assert_array_equal(payload.words, q.reshape(len(z), -1).astype(np.uint8))
    np.testing.assert_allclose(out.numpy(), (q * scale + lo).reshape(z.shape), rtol=1e-6, atol=1e-6)


def test_constant_tensor_is_reconstructed_exactly():
    z = torch.full((2, 3, 4, 4), 2.5)
    z[1] = -1.25
    out, payload = Quantize(4, per_channel=True).roundtrip(z)
    assert torch.equal(out, z)
    assert (payload.words == 0).all()


def test_per_channel_beats_per_tensor_when_channel_ranges_differ():
    rng = np.random.default_rng(1)
    z = rng.uniform(-1, 1, size=(2, 4, 6, 6)).astype(np.float32)
    z *= np.array([0.01, 0.1, 1.0, 100.0], dtype=np.float32)[None, :, None, None]
    zt = torch.from_numpy(z)
    e_tensor = (Quantize(4).roundtrip(zt)[0] - zt).abs().numpy()
    e_channel = (Quantize(4, per_channel=True).roundtrip(zt)[0] - zt).abs().numpy()
    assert e_channel.max() <= e_tensor.max() + 1e-6
    # Per channel and sample, never worse than per tensor's bound; much better on small channels.
    for c in range(3):
        assert e_channel[:, c].max() < 0.1 * e_tensor[:, c].max()
    assert np.mean(e_channel ** 2) < np.mean(e_tensor ** 2)


@pytest.mark.parametrize("n, clips", [(4096, True), (1777, True), (2000, True), (1000, True), (777, False),
                                      (64, False)])
def test_percentile_clipping_uses_the_999_quantile(n, clips):
    """Per sample, values above the 99.9th percentile (the k-th smallest value, k = ⌈0.999·n⌉
    in exact integer arithmetic) are clipped to it, and symmetrically at the bottom. Below
    1000 values that percentile is the maximum, so nothing is clipped."""
    rng = np.random.default_rng(n)
    z = rng.normal(size=(2, n)).astype(np.float32)
    z[0, 3], z[0, 5] = 50.0, -40.0  # outliers far beyond the clip range
    z[1, 7] = 80.0
    out, payload = Quantize(8, percentile=99.9).roundtrip(torch.from_numpy(z.reshape(2, 1, n)))
    out = out.numpy().reshape(2, n)
    assert payload.side_bytes == 8
    for i in range(2):
        srt = np.sort(z[i])
        hi_ref = srt[-(-999 * n // 1000) - 1]
        lo_ref = srt[n // 1000]
        assert out[i].max() == pytest.approx(hi_ref, rel=1e-5, abs=1e-5)
        assert out[i].min() == pytest.approx(lo_ref, rel=1e-5, abs=1e-5)
        # Values beyond the range are clipped to its ends, values inside stay within half a step.
        scale = (hi_ref - lo_ref) / 255
        above, below = z[i] > hi_ref, z[i] < lo_ref
        assert above.any() == clips
        np.testing.assert_allclose(out[i][above], hi_ref, rtol=1e-5)
        np.testing.assert_allclose(out[i][below], lo_ref, rtol=1e-5)
        inside = ~(above | below)
        assert np.all(np.abs(out[i][inside] - z[i][inside]) <= scale / 2 * (1 + 1e-3) + 1e-6)


def test_percentile_clipping_is_per_channel_with_channel_pct():
    rng = np.random.default_rng(9)
    z = rng.normal(size=(1, 3, 40, 50)).astype(np.float32)  # 2000 positions per channel
    z[0, 1, 0, 0] = 99.0
    out, payload = Quantize(8, per_channel=True, percentile=99.9).roundtrip(torch.from_numpy(z))
    assert payload.side_bytes == 8 * 3
    for c in range(3):
        v = np.sort(z[0, c].reshape(-1))
        n = len(v)
        assert out[0, c].max().item() == pytest.approx(v[-(-999 * n // 1000) - 1], rel=1e-5)
        assert out[0, c].min().item() == pytest.approx(v[n // 1000], rel=1e-5)


def test_percentile_clip_is_tighter_than_min_max_with_an_outlier():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(1, 8, 32, 32)).astype(np.float32)
    z[0, 0, 0, 0] = 1000.0
    zt = torch.from_numpy(z)
    bulk = np.abs(z) < 3
    e_pct = (Quantize(4, percentile=99.9).roundtrip(zt)[0] - zt).abs().numpy()[bulk]
    e_mm = (Quantize(4).roundtrip(zt)[0] - zt).abs().numpy()[bulk]
    assert e_pct.mean() < 0.1 * e_mm.mean()


@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 1, 1), (13,), (2, 3), (16, 4, 4), (5, 1, 3)])
@pytest.mark.parametrize("name", ["int3", "int3_channel", "int5_pct", "int8", "int1_channel_pct", "int2"])
def test_nominal_bytes_equal_raw_payload_size(shape, name):
    b = get_bottleneck(name)
    if b.applicable(shape, "x"):
        assert b.per_channel and len(shape) < 2
        return
    z = torch.randn(3, *shape)
    _, payload = b.roundtrip(z)
    numel = math.prod(shape)
    groups = shape[0] if b.per_channel else 1
    expected = math.ceil(numel * b.bits / 8) + 8 * groups  # closed form: packed codes + (lo, scale) per group
    assert b.nominal_bytes(shape) == expected
    np.testing.assert_array_equal(payload.sizes("raw"), [expected] * 3)
    assert payload.side_bytes == 8 * groups
    assert [len(p) for p in payload.packed()] == [math.ceil(numel * b.bits / 8)] * 3


# --------------------------------------------------------------------------------------------
# Coders


def _runs_row(rng, n, bits, lengths):
    """A row of length n made of runs of the given lengths (then random short runs)."""
    hi = 2 ** bits
    parts, total = [], 0
    for L in itertools.chain(lengths, itertools.repeat(None)):
        if total >= n:
            break
        L = int(rng.integers(1, 6)) if L is None else L
        sym = int(rng.integers(0, hi, dtype=np.uint64 if bits == 32 else np.int64))
        if parts and sym == parts[-1][0]:
            sym = (sym + 1) % hi  # keep runs separate so their lengths are what we asked for
        parts.append((sym, L))
        total += L
    return np.concatenate([np.full(L, s, dtype=np.uint64) for s, L in parts])[:n]


@pytest.mark.parametrize("bits, dtype", [(2, np.uint8), (8, np.uint8), (16, np.uint16), (32, np.uint32)])
def test_rle_round_trip_and_sizes(bits, dtype):
    rng = np.random.default_rng(bits)
    n = 20_000
    rows = np.stack([
        _runs_row(rng, n, bits, [16_384, 127, 128, 1]),    # a 3-byte varint, and both sides of 1→2 bytes
        _runs_row(rng, n, bits, [300, 16_383, 2, 129]),    # the largest 2-byte run
        _runs_row(rng, n, bits, []),                        # short runs only
        np.full(n, 2 ** bits - 1, dtype=np.uint64),         # one run of the largest symbol
    ]).astype(dtype)
    sizes = rle_sizes(rows, bits)
    assert sizes.dtype == np.int64
    for row, size in zip(rows, sizes):
        enc = rle_encode(row, bits)
        assert len(enc) == size == _rle_size_ref(row, bits)
        dec = rle_decode(enc, bits)
        np.testing.assert_array_equal(dec, row.astype(np.int64))
    # Closed form for the single run: one symbol + LEB128 of 20000 (15 bits → 3 bytes).
    assert sizes[3] == max(1, bits // 8) + 3
    payload = Payload(words=rows, bits=bits, side_bytes=12)
    np.testing.assert_array_equal(payload.sizes("rle"), sizes + 12)


@pytest.mark.parametrize("length, varint", [(1, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_152, 4)])
def test_rle_run_length_varint_boundaries(length, varint):
    row = np.full((1, length), 7, dtype=np.uint8)
    assert rle_sizes(row, 8)[0] == 1 + varint
    enc = rle_encode(row[0], 8)
    assert enc[0] == 7 and len(enc) == 1 + varint
    # LEB128: 7 bits per byte, little-endian, high bit set on all but the last byte.
    value = sum((b & 0x7F) << (7 * i) for i, b in enumerate(enc[1:]))
    assert value == length
    assert all(b & 0x80 for b in enc[1:-1]) and not enc[-1] & 0x80


def test_rle_of_empty_rows_is_zero():
    assert rle_sizes(np.zeros((3, 0), dtype=np.uint8), 8).tolist() == [0, 0, 0]
    assert rle_encode(np.zeros(0, dtype=np.uint8), 8) == b""
    assert len(rle_decode(b"", 8)) == 0


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_zstd_sizes_match_zstandard_on_the_packed_codes(bits):
    zstandard = pytest.importorskip("zstandard")
    rng = np.random.default_rng(bits)
    words = rng.integers(0, 2 ** bits, size=(3, 1001)).astype(np.uint8)
    words[1, :600] = 1  # compressible
    payload = Payload(words=words, bits=bits, side_bytes=16)
    comp = zstandard.ZstdCompressor(level=3)
    packed = [_pack_ref(row, bits) if bits < 8 else row.tobytes() for row in words]
    assert payload.packed() == packed
    np.testing.assert_array_equal(payload.sizes("zstd"), [len(comp.compress(p)) + 16 for p in packed])
    assert payload.sizes("zstd")[1] < payload.sizes("zstd")[0]


def test_four_bit_codes_unpack_back():
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 16, size=(2, 37)).astype(np.uint8)  # odd count: a half byte of padding
    payload = Payload(words=codes, bits=4)
    for row, p in zip(codes, payload.packed()):
        assert len(p) == math.ceil(37 * 4 / 8)
        bits = np.unpackbits(np.frombuffer(p, dtype=np.uint8))
        assert not bits[37 * 4:].any()  # zero padding
        back = np.packbits(np.pad(bits[:37 * 4].reshape(37, 4), ((0, 0), (4, 0))), axis=1)[:, 0]
        np.testing.assert_array_equal(back, row)


def test_float_payloads():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 3, 5, 7)).astype(np.float32)
    zt = torch.from_numpy(z.copy())
    numel = 3 * 5 * 7
    out32, p32 = get_bottleneck("none").roundtrip(zt)
    assert torch.equal(out32, zt)
    np.testing.assert_array_equal(p32.sizes("raw"), [numel * 4] * 4)
    np.testing.assert_array_equal(p32.words.view(np.float32), z.reshape(4, -1))
    assert p32.packed()[2] == z[2].tobytes()
    out16, p16 = get_bottleneck("fp16").roundtrip(zt)
    np.testing.assert_array_equal(out16.numpy(), z.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(p16.sizes("raw"), [numel * 2] * 4)
    np.testing.assert_array_equal(p16.words.view(np.float16), z.reshape(4, -1).astype(np.float16))
    assert p16.packed()[1] == z[1].astype("<f2").tobytes()
    assert get_bottleneck("none").nominal_bytes((3, 5, 7)) == numel * 4
    assert get_bottleneck("fp16").nominal_bytes((3, 5, 7)) == numel * 2
    np.testing.assert_array_equal(p16.sizes("rle"), [_rle_size_ref(r, 16) for r in p16.words])


def test_unknown_coder_is_a_user_error():
    with pytest.raises(UserError, match="raw, zstd, rle"):
        Payload(words=np.zeros((1, 4), dtype=np.uint8), bits=8).sizes("gzip")


# --------------------------------------------------------------------------------------------
# Top channels


def _ctx(shape, scores=None, mean=None, seed=0, split="layer"):
    return FitContext(split=split, shape=shape, tail=nn.Identity(), calibration=lambda: (_ for _ in ()).throw(
        AssertionError("top channels never read calibration activations")), channel_scores=scores, mean=mean,
        seed=seed)


def _topk_ref(scores, k):
    """The k largest scores, ties to the lower index, in index order."""
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("channels", [1, 7, 10, 64])
def test_gradcam_keeps_the_top_k_channels(fraction, channels):
    rng = np.random.default_rng(channels)
    scores = rng.integers(0, 4, size=channels).astype(float)  # many ties
    t = TopChannels(fraction, "gradcam").fit(_ctx((channels, 3, 3), scores=scores))
    k = max(1, round(fraction * channels))
    assert t.count(channels) == k
    assert t.keep.tolist() == _topk_ref(scores.tolist(), k)


def test_gradcam_ties_keep_lower_indices():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.9, 0.3, 0.5, 0.0, 0.2, 0.5])
    t = get_bottleneck("top50_gradcam").fit(_ctx((10, 2, 2), scores=scores))
    assert t.keep.tolist() == [0, 1, 2, 4, 6]


def test_gradcam_fit_does_not_mutate_the_template():
    t = get_bottleneck("top25_gradcam")
    f = t.fit(_ctx((8, 2, 2), scores=np.arange(8.0)))
    assert t.keep is None and f.keep.tolist() == [6, 7]


def test_random_selection_is_seeded():
    t = get_bottleneck("top25_random")
    a = t.fit(_ctx((64, 2, 2), seed=11)).keep
    b = t.fit(_ctx((64, 2, 2), seed=11)).keep
    c = t.fit(_ctx((64, 2, 2), seed=12)).keep
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    for keep in (a, c):
        assert len(keep) == 16 and len(set(keep.tolist())) == 16
        assert keep.tolist() == sorted(keep.tolist()) and 0 <= keep.min() and keep.max() < 64
    ref = np.sort(np.random.default_rng(11).permutation(64)[:16])
    np.testing.assert_array_equal(a.numpy(), ref)


@pytest.mark.parametrize("shape", [(6, 3, 4), (9,)])
def test_dropped_channels_get_the_fill_and_kept_ones_pass_exactly(shape):
    rng = np.random.default_rng(0)
    mean = torch.from_numpy(rng.normal(size=shape).astype(np.float32))
    scores = rng.permutation(shape[0]).astype(float)
    t = TopChannels(0.5, "gradcam").fit(_ctx(shape, scores=scores, mean=mean))
    keep = set(_topk_ref(scores.tolist(), max(1, round(0.5 * shape[0]))))
    z = torch.from_numpy(rng.normal(size=(5, *shape)).astype(np.float32))
    out, payload = t.roundtrip(z)
    assert out.shape == z.shape
    for c in range(shape[0]):
        if c in keep:
            assert torch.equal(out[:, c], z[:, c])
        else:
            assert torch.equal(out[:, c], mean[c].expand_as(out[:, c]))
    per_channel = math.prod(shape[1:])
    expected = 4 * len(keep) * per_channel
    assert t.nominal_bytes(shape) == expected
    np.testing.assert_array_equal(payload.sizes("raw"), [expected] * 5)
    np.testing.assert_array_equal(payload.words.view(np.float32),
                                  z.numpy()[:, sorted(keep)].reshape(5, -1))
    # The fill is a copy: changing the calibration mean afterwards changes nothing.
    mean += 1
    assert torch.equal(t.roundtrip(z)[0], out)


def test_fill_defaults_to_zero_without_a_mean():
    t = TopChannels(0.25, "random").fit(_ctx((4, 2, 2), seed=1))
    out, _ = t.roundtrip(torch.ones(2, 4, 2, 2))
    assert out.sum() == 2 * 1 * 4  # one channel of ones per sample, the rest zeros
    assert set(out.reshape(-1).tolist()) == {0.0, 1.0}


def test_top_channels_applicability():
    t = get_bottleneck("top50_gradcam")
    assert t.applicable((1, 32, 32), "input")
    assert t.applicable((16, 8, 8), "conv1") is None
    assert t.applicable((128,), "fc1") is None
    assert t.applicable((4, 8), "x")
    assert get_bottleneck("top50_random").applicable((3, 8, 8), "input")


def test_gradcam_without_scores_fails():
    with pytest.raises(RuntimeError, match="layer"):
        get_bottleneck("top50_gradcam").fit(_ctx((4, 2, 2)))


# --------------------------------------------------------------------------------------------
# Autoencoder


@pytest.mark.parametrize("shape", [(8, 7, 9), (16, 8, 8), (4, 5, 4), (3, 4, 11), (1, 6, 5), (32, 13, 16)])
def test_autoencoder_shapes(shape):
    c, h, w = shape
    torch.manual_seed(0)
    net = AutoencoderNet(shape)
    z = torch.randn(2, *shape)
    code = net.encode(z)
    code_shape = (max(1, c // 4), math.ceil(math.ceil(h / 2) / 2), math.ceil(math.ceil(w / 2) / 2))
    assert tuple(code.shape) == (2, *code_shape) == (2, *net.code_shape)
    assert net.decode(code).shape == z.shape
    ae = Autoencoder()
    assert ae.nominal_bytes(shape) == 4 * math.prod(code_shape)
    ae.net = net.eval()
    out, payload = ae.roundtrip(z)
    assert out.shape == z.shape
    np.testing.assert_array_equal(payload.sizes("raw"), [4 * math.prod(code_shape)] * 2)
    torch.testing.assert_close(torch.from_numpy(payload.words.view(np.float32)),
                               net.encode(z).detach().reshape(2, -1))


def test_autoencoder_applicability():
    ae = get_bottleneck("autoencoder")
    assert ae.applicable((8, 4, 4), "x") is None
    assert ae.applicable((8, 3, 8), "x")
    assert ae.applicable((128,), "x")
    assert ae.applicable((1, 32), "x")


SHAPE = (8, 6, 5)


@pytest.fixture(scope="module")
def calib():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(48, *SHAPE, generator=g) * 2 + 1
    y = torch.randint(0, 3, (48,), generator=g)
    return z, y


def _tail():
    torch.manual_seed(123)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 3))


@pytest.mark.trained
def test_autoencoder_fit_freezes_the_tail_and_is_deterministic(calib):
    tail = _tail()
    tail[1].bias.requires_grad_(False)  # a caller's frozen parameter stays frozen, the others trainable
    tail.train()
    before = {k: v.clone() for k, v in tail.state_dict().items()}
    calls = []

    def calibration():
        calls.append(1)
        return calib

    ctx = FitContext(split="s", shape=SHAPE, tail=tail, calibration=calibration, seed=5, options={"epochs": 2})
    rng_before = torch.get_rng_state()
    template = get_bottleneck("autoencoder")
    a = template.fit(ctx)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG is left alone
    assert template.net is None and a.net is not None
    for k, v in tail.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert tail[1].weight.requires_grad and not tail[1].bias.requires_grad
    assert all(m.training for m in tail.modules())
    assert len(a.history) == 2 and all(math.isfinite(h) for h in a.history)
    assert not a.net.training

    # The net was trained: its weights moved away from the seeded initialisation.
    with torch.random.fork_rng():
        torch.manual_seed(5)
        init = AutoencoderNet(SHAPE)
    assert not torch.equal(init.encoder[0].weight, a.net.encoder[0].weight)
    # It standardises with the calibration statistics.
    z, _ = calib
    torch.testing.assert_close(a.net.mu.reshape(-1), z.mean((0, 2, 3)))
    torch.testing.assert_close(a.net.sigma.reshape(-1), z.std((0, 2, 3)))

    torch.manual_seed(999)  # a different global state must not matter
    b = template.fit(ctx)
    x = torch.randn(4, *SHAPE)
    assert torch.equal(a.roundtrip(x)[0], b.roundtrip(x)[0])
    assert a.history == b.history
    c = template.fit(FitContext(split="s", shape=SHAPE, tail=tail, calibration=calibration, seed=6,
                                options={"epochs": 2}))
    assert not torch.equal(a.roundtrip(x)[0], c.roundtrip(x)[0])
    assert len(calls) == 3


@pytest.mark.trained
def test_autoencoder_training_lowers_the_loss(calib):
    """More epochs on the same data reach a lower training loss than the first epoch's."""
    ctx = FitContext(split="s", shape=SHAPE, tail=_tail(), calibration=lambda: calib, seed=0,
                     options={"epochs": 6, "lr": 1e-2, "batch_size": 16})
    fitted = Autoencoder().fit(ctx)
    assert len(fitted.history) == 6
    assert fitted.history[-1] < fitted.history[0]
