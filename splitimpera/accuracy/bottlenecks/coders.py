"""The lossless coders that put a bottleneck's payload on the wire, and byte counting.

A :class:`Payload` holds one batch's symbols (``bits`` significant bits each) plus per-sample
side information. Bytes per sample under a coder (:meth:`Payload.sizes`):

    raw    codes bit-packed (whole codes per byte for 1, 2 and 4 bits), floats as they are
    zstd   Zstandard (level :data:`ZSTD_LEVEL`) on the packed bytes
    rle    run-length coding of the code sequence (:func:`rle_encode`), as Carra & Neglia
           (2023) do after quantisation

Side information (quantisation ranges) is counted uncompressed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import UserError

CODERS = ("raw", "zstd", "rle")
ZSTD_LEVEL = 3


@dataclass
class Payload:
    """What one batch sends: ``words`` (B, n) unsigned integers holding one symbol each
    (``bits`` significant bits per symbol) plus ``side_bytes`` of side information per sample."""

    words: np.ndarray
    bits: int
    side_bytes: int = 0
    side: np.ndarray | None = None  # (B, side_bytes / 4) float32 values sent beside the codes, if any

    def packed(self) -> list[bytes]:
        """Each sample's symbols as bytes: codes under 8 bits are bit-packed, wider words
        are written little-endian as they are."""
        w = self.words
        if self.bits in (8, 16, 32):
            return [bytes(row) for row in np.ascontiguousarray(w).astype(f"<u{self.bits // 8}").view(np.uint8)]
        if self.bits in (1, 2, 4):  # whole codes per byte: shift and add, first code in the high bits
            per = 8 // self.bits
            n = w.shape[1]
            padded = np.zeros((len(w), -(-n // per) * per), dtype=np.uint8)
            padded[:, :n] = w
            groups = padded.reshape(len(w), -1, per)
            shifts = (8 - self.bits * (np.arange(per) + 1)).astype(np.uint8)
            packed = np.bitwise_or.reduce(groups << shifts, axis=-1).astype(np.uint8)
            return [bytes(row) for row in packed]
        bits = np.unpackbits(w.astype(np.uint8)[..., None], axis=-1)[..., 8 - self.bits:]
        return [bytes(np.packbits(row.reshape(-1))) for row in bits]

    def encoded(self, coder: str) -> list[bytes]:
        """Each sample's bytes on the wire under ``coder``: the side information (float32,
        little-endian) then the coded symbols. ``len`` of each equals :meth:`sizes`."""
        if coder == "raw":
            body = self.packed()
        elif coder == "zstd":
            import zstandard

            c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            body = [c.compress(b) for b in self.packed()]
        elif coder == "rle":
            body = [rle_encode(row, self.bits) for row in self.words]
        else:
            raise UserError(f"unknown coder {coder!r} (known: {', '.join(CODERS)})")
        if not self.side_bytes:
            return body
        side = np.ascontiguousarray(self.side, dtype="<f4")
        if side.shape != (len(self.words), self.side_bytes // 4):
            raise ValueError(f"side information of shape {side.shape} for {self.side_bytes} side bytes per sample")
        return [side[i].tobytes() + b for i, b in enumerate(body)]

    def sizes(self, coder: str) -> np.ndarray:
        """Bytes per sample under ``coder`` (side information included)."""
        if coder == "raw":
            n = self.words.shape[1]
            return np.full(len(self.words), math.ceil(n * self.bits / 8) + self.side_bytes, dtype=np.int64)
        if coder == "zstd":
            import zstandard

            c = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
            return np.array([len(c.compress(b)) + self.side_bytes for b in self.packed()], dtype=np.int64)
        if coder == "rle":
            return rle_sizes(self.words, self.bits) + self.side_bytes
        raise UserError(f"unknown coder {coder!r} (known: {', '.join(CODERS)})")


def _word_dtype(bits: int) -> str:
    return "<u4" if bits > 16 else "<u2" if bits > 8 else "u1"


def unpack(buf: bytes, bits: int, n: int) -> np.ndarray:
    """Inverse of :meth:`Payload.packed` for one sample of ``n`` symbols: words (n,).
    Raises ValueError when ``buf`` does not hold exactly ``n`` symbols."""
    if bits in (8, 16, 32):
        if len(buf) != n * bits // 8:
            raise ValueError(f"{len(buf)} bytes for {n} {bits}-bit symbols")
        return np.frombuffer(buf, dtype=f"<u{bits // 8}").copy()
    if len(buf) != math.ceil(n * bits / 8):
        raise ValueError(f"{len(buf)} bytes for {n} {bits}-bit symbols")
    flat = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))[: n * bits].reshape(n, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint32)
    return (flat.astype(np.uint32) @ weights).astype(_word_dtype(bits))


def decode_words(blob: bytes, coder: str, bits: int, n: int, side_values: int = 0,
                 max_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of :meth:`Payload.encoded` for one sample: ``(words (n,), side (side_values,)
    float32 or None)``. ``max_bytes`` bounds a decompressed body (a zstd frame may claim any
    size). Raises ValueError on a payload that does not decode to ``n`` symbols."""
    side = None
    if side_values:
        if len(blob) < 4 * side_values:
            raise ValueError(f"{len(blob)} bytes, fewer than the {4 * side_values} bytes of side information")
        side = np.frombuffer(blob[:4 * side_values], dtype="<f4").astype(np.float32)
        blob = blob[4 * side_values:]
    limit = max_bytes if max_bytes is not None else math.ceil(n * bits / 8)
    if coder == "raw":
        return unpack(blob, bits, n), side
    if coder == "zstd":
        import zstandard

        try:
            # The frame states its size (our coder writes it): refuse an unknown or too large
            # one before anything is allocated; decompress() trusts a stated size over
            # max_output_size.
            size = zstandard.frame_content_size(bytes(blob[:18]))
        except zstandard.ZstdError as e:
            raise ValueError(f"zstd: {e}") from None
        if size < 0 or size > limit:
            raise ValueError(f"zstd frame of {'unknown' if size < 0 else size} decompressed bytes "
                             f"(expected at most {limit})")
        obj = zstandard.ZstdDecompressor().decompressobj()
        try:
            body = obj.decompress(bytes(blob))
        except zstandard.ZstdError as e:
            raise ValueError(f"zstd: {e}") from None
        if not obj.eof or obj.unused_data or len(body) != size:
            raise ValueError("not exactly one complete zstd frame")
        return unpack(body, bits, n), side
    if coder == "rle":
        words = rle_decode(blob, bits, limit=n)
        if len(words) != n:
            raise ValueError(f"run-length code holds {len(words)} symbols, not {n}")
        return words.astype(_word_dtype(bits)), side
    raise ValueError(f"unknown coder {coder!r}")


def _symbol_bytes(bits: int) -> int:
    return max(1, math.ceil(bits / 8))


def _varint_bytes(n: np.ndarray) -> np.ndarray:
    """LEB128 length of each positive integer: 7 bits per byte (integer comparisons, exact)."""
    n = np.asarray(n)
    out = np.ones(n.shape, dtype=np.int64)
    for k in range(1, 10):
        out += n >= (1 << (7 * k))
    return out


def rle_sizes(words: np.ndarray, bits: int) -> np.ndarray:
    """Bytes of :func:`rle_encode` for each row of ``words`` (B, n), without encoding."""
    B, n = words.shape
    if n == 0:
        return np.zeros(B, dtype=np.int64)
    starts = np.empty((B, n), dtype=bool)
    starts[:, 0] = True
    np.not_equal(words[:, 1:], words[:, :-1], out=starts[:, 1:])
    idx = np.flatnonzero(starts)  # run starts, row-major, in flat positions
    rows = idx // n
    ends = np.empty_like(idx)
    ends[:-1] = idx[1:]
    ends[-1] = B * n
    lengths = np.minimum(ends, (rows + 1) * n) - idx  # a run ends at the next start or its row's end
    return np.bincount(rows, weights=_symbol_bytes(bits) + _varint_bytes(lengths), minlength=B).astype(np.int64)


def rle_encode(symbols: np.ndarray, bits: int) -> bytes:
    """Run-length code of a 1-D symbol sequence: per run, the symbol (little-endian,
    ``ceil(bits/8)`` bytes) then the run length as an LEB128 varint."""
    s = np.asarray(symbols).reshape(-1)
    out = bytearray()
    width = _symbol_bytes(bits)
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out += int(s[i]).to_bytes(width, "little")
        n = j - i
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                break
        i = j
    return bytes(out)


def rle_decode(buf: bytes, bits: int, limit: int | None = None) -> np.ndarray:
    """Inverse of :func:`rle_encode`. ``limit``: most symbols accepted (a hostile run length
    could claim any number); ValueError past it or on a truncated code."""
    width, syms, runs, total, i = _symbol_bytes(bits), [], [], 0, 0
    while i < len(buf):
        if i + width > len(buf):
            raise ValueError("truncated run-length code")
        sym = int.from_bytes(buf[i:i + width], "little")
        i += width
        n = shift = 0
        while True:
            if i >= len(buf) or shift > 63:
                raise ValueError("truncated run-length code")
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if n == 0:  # the encoder never writes an empty run; a stream of them is only work
            raise ValueError("run of length 0 in a run-length code")
        total += n
        if limit is not None and total > limit:
            raise ValueError(f"run-length code holds more than {limit} symbols")
        syms.append(sym)
        runs.append(n)
    return np.repeat(np.array(syms, dtype=np.int64), runs)


def float_payload(z: torch.Tensor, dtype: torch.dtype) -> Payload:
    """``z`` (B, ...) as ``dtype`` floats, one row of 16- or 32-bit words per sample."""
    bits = torch.finfo(dtype).bits
    v = z.detach().to(dtype).reshape(len(z), -1).contiguous().numpy()
    return Payload(words=v.view(np.uint16 if bits == 16 else np.uint32), bits=bits)
