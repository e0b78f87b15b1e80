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


def rle_decode(buf: bytes, bits: int) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    width, out, i = _symbol_bytes(bits), [], 0
    while i < len(buf):
        sym = int.from_bytes(buf[i:i + width], "little")
        i += width
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out.extend([sym] * n)
    return np.array(out, dtype=np.int64)


def _float_words(z: torch.Tensor, dtype: torch.dtype) -> Payload:
    bits = torch.finfo(dtype).bits
    v = z.detach().to(dtype).reshape(len(z), -1).contiguous().numpy()
    return Payload(words=v.view(np.uint16 if bits == 16 else np.uint32), bits=bits)
