"""Storage encoding of one quantized layer, independent of the container (HDF5 comes later).

A layer is a codebook (float32), one assignment per nonzero and the nonzero positions. Two
symbol streams are stored, each with the smallest of three codecs, chosen per stream:
- **values**: the assignments, alphabet 2**bits;
- **indices**: the gaps between consecutive nonzeros in row-major order (Deep Compression's
  relative indices), in ``index_bits``-bit symbols: symbol s < M = 2**index_bits - 1 means "s
  zeros, then a nonzero"; symbol M is a filler, "M zeros and no nonzero yet" (Deep Compression
  pads a zero weight instead; our values live in their own stream, so no filler weight is
  stored). The encoder picks ``index_bits`` per layer by the encoded size. Optionally
  (``COMPACT``, chosen when smaller) the gaps run over the live rows x live columns only, with
  one bitmap bit per row and per column: pruning empties whole rows and columns.

Codecs: ``PACKED`` (fixed width, MSB first), ``HUFFMAN`` (canonical, code lengths <= 15, code
lengths stored as Elias-gamma zigzag deltas, table-driven decoder vectorized in NumPy) and
``DEFLATE`` (raw zlib stream of the packed bytes). Measured on two sparse LeNet-5s
(``benchmarks/bench_quantize.py``, docs/quantization.md): over all streams Huffman is 16-25%
smaller than zlib, bz2 or lzma on the sparser model and level with zlib on the denser one;
bz2 and lzma never win (their headers, ~40-60 B, are a large share of streams of 50-2,500 B).
DEFLATE wins where packed bytes hold whole pairs of 4-bit symbols: its byte-level Huffman then
codes neighbouring assignments jointly (fc1 values at 4 bits: 2,412 B vs Huffman's 2,579 B),
so it stays as a third choice; the encoder keeps the smallest, packed when nothing helps.

Decoding validates everything and raises ``ModelFileError``, never garbage: bits or index bits
outside 1..16, an unknown codec, a codebook longer than 2**bits or holding NaN, inf or 0, an
assignment past the codebook, a packed stream of the wrong length or with nonzero padding, a
Huffman table that is over- or under-subscribed or does not decode the stream exactly, a
DEFLATE stream that does not inflate to exactly the packed length, a gap stream that runs past
the tensor or ends in a filler, unknown flags, truncation, trailing bytes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ModelFileError
from .quantize import MAX_BITS, MIN_BITS, QuantizedLayer, check_bits

PACKED, HUFFMAN, DEFLATE = 0, 1, 2
CODECS = {PACKED: "packed", HUFFMAN: "huffman", DEFLATE: "deflate"}
HUFFMAN_MAX_LEN = 15           # decode table: 2**15 entries
FORMAT_VERSION = 2             # written; version 1 blobs (fixed-width header) are still read
MAX_NDIM = 8
INDEX_BITS_SEARCH = range(1, 13)


# ---------------------------------------------------------------------- fixed-width packing
def pack_bits(symbols: np.ndarray, width: int) -> bytes:
    """Symbols (each < 2**width) as a big-endian bit string, ``width`` bits each, zero padded."""
    s = np.asarray(symbols, np.int64).ravel()
    if s.size and (s.min() < 0 or s.max() >> width):
        raise ConfigError(f"symbols do not fit {width} bits")
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    bits = ((s[:, None] >> shifts) & 1).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def unpack_bits(data: bytes, width: int, n: int, what: str = "packed stream") -> np.ndarray:
    """Inverse of ``pack_bits``: exactly ceil(n*width/8) bytes with zero padding, else
    ModelFileError."""
    if not MIN_BITS <= width <= MAX_BITS:
        raise ModelFileError(f"{what}: bit width {width} outside {MIN_BITS}..{MAX_BITS}")
    nbits = n * width
    if len(data) != -(-nbits // 8):
        raise ModelFileError(f"{what}: {len(data)} bytes, {-(-nbits // 8)} expected for "
                             f"{n} symbols of {width} bits")
    bits = np.unpackbits(np.frombuffer(data, np.uint8))
    if bits[nbits:].any():
        raise ModelFileError(f"{what}: nonzero padding bits")
    weights = np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64)
    return (bits[:nbits].reshape(n, width).astype(np.int64) @ weights).astype(np.int32)


# ---------------------------------------------------------------------- canonical Huffman
def _huffman_depths(weights: np.ndarray) -> np.ndarray:
    """Leaf depths of a Huffman tree over ``weights`` sorted ascending (two-queue method)."""
    n = weights.size
    w = [int(v) for v in weights] + [0] * (n - 1)
    parent = [0] * (2 * n - 1)
    leaf, node = 0, n                                 # next leaf; next internal to merge
    for new in range(n, 2 * n - 1):
        kids = []
        for _ in range(2):
            if leaf < n and (node >= new or w[leaf] <= w[node]):
                kids.append(leaf)
                leaf += 1
            else:
                kids.append(node)
                node += 1
        w[new] = w[kids[0]] + w[kids[1]]
        parent[kids[0]] = parent[kids[1]] = new
    depth = [0] * (2 * n - 1)
    for v in range(2 * n - 3, -1, -1):               # the root (last) has depth 0
        depth[v] = depth[parent[v]] + 1
    return np.array(depth[:n], np.int64)


def huffman_lengths(counts: np.ndarray, max_len: int = HUFFMAN_MAX_LEN) -> np.ndarray:
    """Code length per symbol (0 for unused) of a Huffman code limited to ``max_len`` bits.

    Plain Huffman first; if a code is longer than ``max_len``, the histogram of lengths is
    clamped and repaired as zlib does (a leaf moves one level down until the Kraft sum fits,
    spare room then goes back to the shortest levels), and the lengths are dealt out again
    with the shortest codes to the most frequent symbols. A single used symbol gets length 1.
    """
    counts = np.asarray(counts, np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(counts.size, np.int64)
    if used.size <= 1:
        lengths[used] = 1
        return lengths
    if used.size > 1 << max_len:
        raise ConfigError(f"{used.size} symbols cannot have codes of at most {max_len} bits")
    order = used[np.lexsort((used, counts[used]))]    # rarest first
    depths = _huffman_depths(counts[order])
    if depths.max() > max_len:
        hist = np.bincount(np.minimum(depths, max_len), minlength=max_len + 1)
        unit = np.int64(1) << (max_len - np.arange(max_len + 1))
        excess = int(hist @ unit) - (1 << max_len)    # Kraft sum over budget, in 2**-max_len
        while excess > 0:                             # lengthen one code of the deepest level
            b = max(b for b in range(1, max_len) if hist[b])
            hist[b] -= 1
            hist[b + 1] += 1
            excess -= int(unit[b + 1])
        while excess < 0:                             # spare room: shorten the shallowest
            b = min((b for b in range(2, max_len + 1) if hist[b] and unit[b] <= -excess),
                    default=0)
            if not b:
                break
            hist[b] -= 1
            hist[b - 1] += 1
            excess += int(unit[b])
        depths = np.repeat(np.arange(max_len, 0, -1), hist[max_len:0:-1])
    lengths[order] = depths
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical code of each symbol (by length, then symbol), as integers."""
    lengths = np.asarray(lengths, np.int64)
    codes = np.zeros(lengths.size, np.int64)
    order = np.lexsort((np.arange(lengths.size), lengths))
    order = order[lengths[order] > 0]
    code, prev = 0, 0
    for s in order:
        code <<= int(lengths[s]) - prev
        prev = int(lengths[s])
        codes[s] = code
        code += 1
    return codes


def _table_header(lengths: np.ndarray, n: int) -> bytes:
    """u32 symbol count, u16 (table size - 1), then the code lengths as Elias-gamma codes of
    their zigzag deltas (neighbouring lengths rarely differ by more than one: ~1-3 bits each),
    zero-padded to a byte."""
    size = int(np.flatnonzero(lengths)[-1]) + 1 if lengths.any() else 1
    words, prev = [], 0
    for length in lengths[:size]:
        d = int(length) - prev
        v = (2 * d if d >= 0 else -2 * d - 1) + 1
        words.append("0" * (v.bit_length() - 1) + format(v, "b"))
        prev = int(length)
    bits = np.frombuffer("".join(words).encode(), np.uint8) - ord("0")
    return struct.pack("<IH", n, size - 1) + np.packbits(bits).tobytes()


def huffman_encode(symbols: np.ndarray, alphabet: int) -> bytes:
    """Canonical Huffman coding of ``symbols`` (each < ``alphabet``): table, then the bits."""
    s = np.asarray(symbols, np.int64).ravel()
    if s.size and (s.min() < 0 or s.max() >= alphabet):
        raise ConfigError(f"symbols outside the alphabet 0..{alphabet - 1}")
    lengths = huffman_lengths(np.bincount(s, minlength=alphabet))
    codes = canonical_codes(lengths)
    ln, cd = lengths[s], codes[s]
    total = int(ln.sum())
    starts = np.cumsum(ln) - ln
    shift = np.repeat(ln, ln) - 1 - (np.arange(total) - np.repeat(starts, ln))
    bits = ((np.repeat(cd, ln) >> shift) & 1).astype(np.uint8)
    return _table_header(lengths, s.size) + np.packbits(bits).tobytes()


def _read_table(data: bytes, alphabet: int, what: str) -> tuple[int, np.ndarray, int]:
    """(symbol count, code lengths, header bytes) of a Huffman stream, checked."""
    if len(data) < 6:
        raise ModelFileError(f"{what}: Huffman stream too short for its header")
    n, size = struct.unpack_from("<IH", data)
    size += 1
    if size > alphabet:
        raise ModelFileError(f"{what}: Huffman table codes symbols up to {size - 1}, past the "
                             f"alphabet 0..{alphabet - 1}")
    # every length takes 1..9 bits: read at most that much, as a string of '0'/'1'
    chunk = np.frombuffer(data, np.uint8, min(len(data) - 6, -(-9 * size // 8)), 6)
    bits = (np.unpackbits(chunk) + ord("0")).tobytes().decode()
    lengths = np.zeros(size, np.int64)
    pos, prev = 0, 0
    for i in range(size):
        one = bits.find("1", pos)
        zeros = one - pos
        if one < 0 or zeros > 4 or one + zeros >= len(bits):
            raise ModelFileError(f"{what}: Huffman table truncated or malformed")
        v = int(bits[one:one + zeros + 1], 2) - 1
        prev += v // 2 if v % 2 == 0 else -(v + 1) // 2
        if not 0 <= prev <= HUFFMAN_MAX_LEN:
            raise ModelFileError(f"{what}: Huffman code length {prev} outside "
                                 f"0..{HUFFMAN_MAX_LEN}")
        lengths[i] = prev
        pos = one + zeros + 1
    if "1" in bits[pos:-(-pos // 8) * 8]:
        raise ModelFileError(f"{what}: nonzero padding after the Huffman table")
    head = 6 + -(-pos // 8)
    used = int(np.count_nonzero(lengths))
    kraft = int(sum(1 << (HUFFMAN_MAX_LEN - int(v)) for v in lengths[lengths > 0]))
    if n and used == 0:
        raise ModelFileError(f"{what}: Huffman table codes no symbol for {n} symbols")
    if used > 1 and kraft != 1 << HUFFMAN_MAX_LEN or used == 1 and lengths.max() != 1:
        state = "over-subscribed" if kraft > 1 << HUFFMAN_MAX_LEN else "incomplete"
        raise ModelFileError(f"{what}: Huffman table is {state} (not a prefix code that decodes)")
    return n, lengths, head


def huffman_decode(data: bytes, alphabet: int, what: str = "Huffman stream") -> np.ndarray:
    """Decode ``huffman_encode`` output; every symbol < ``alphabet``, the bit string used
    exactly (ModelFileError otherwise).

    Table-driven and vectorized: the next 15 bits at every bit offset index one table giving
    (symbol, length) of the code starting there, i.e. the offset of the next code; the chain of
    code starts from offset 0 is then followed by pointer doubling, log2(n) gathers over the
    stream instead of n Python steps.
    """
    n, lengths, head = _read_table(data, alphabet, what)
    payload = np.frombuffer(data, np.uint8, offset=head)
    nbits = payload.size * 8
    if n > nbits:  # each code is at least one bit: also bounds what a hostile count allocates
        raise ModelFileError(f"{what}: {n} symbols cannot fit {nbits} bits")
    if n == 0:
        if payload.size:
            raise ModelFileError(f"{what}: bits after an empty stream")
        return np.zeros(0, np.int32)
    L = HUFFMAN_MAX_LEN
    codes = canonical_codes(lengths)
    syms = np.flatnonzero(lengths)
    span = np.int64(1) << (L - lengths[syms])
    table_sym = np.zeros(1 << L, np.int32)
    table_len = np.zeros(1 << L, np.int64)     # 0: no code starts with these bits
    first = codes[syms] << (L - lengths[syms])
    idx = np.repeat(first, span) + (np.arange(int(span.sum())) - np.repeat(np.cumsum(span) - span,
                                                                           span))
    table_sym[idx] = np.repeat(syms, span)
    table_len[idx] = np.repeat(lengths[syms], span)
    bits = np.concatenate([np.unpackbits(payload), np.zeros(L, np.uint8)]).astype(np.int64)
    window = np.zeros(nbits, np.int64)
    for j in range(L):
        window = (window << 1) | bits[j:j + nbits]
    # next code start from each offset; nbits+1 is "failed" (absorbing); nbits itself is the end
    sentinel = nbits + 1
    jump = np.full(nbits + 2, sentinel, np.int64)
    step = table_len[window]
    nxt = np.arange(nbits) + step
    jump[:nbits] = np.where((step > 0) & (nxt <= nbits), nxt, sentinel)
    starts = np.zeros(n + 1, np.int64)
    filled = 1
    while filled <= n:
        take = min(filled, n + 1 - filled)
        starts[filled:filled + take] = jump[starts[:take]]
        filled += take
        if filled <= n:
            jump = jump[jump]
    end = int(starts[n])
    if end == sentinel:
        raise ModelFileError(f"{what}: the bits do not decode into {n} symbols")
    if -(-end // 8) != payload.size or bits[end:nbits].any():
        raise ModelFileError(f"{what}: {payload.size * 8 - end} bits left over after "
                             f"{n} symbols")
    return table_sym[window[starts[:n]]]


# ---------------------------------------------------------------------- DEFLATE
def deflate_encode(symbols: np.ndarray, width: int) -> bytes:
    """Raw DEFLATE (zlib, level 9, no zlib header) of the packed stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    return c.compress(pack_bits(symbols, width)) + c.flush()


def deflate_decode(data: bytes, width: int, n: int, what: str = "deflate stream") -> np.ndarray:
    """Inverse of ``deflate_encode``: the data must inflate to exactly the packed stream of
    ``n`` symbols (no more is ever inflated), else ModelFileError."""
    if not MIN_BITS <= width <= MAX_BITS:
        raise ModelFileError(f"{what}: bit width {width} outside {MIN_BITS}..{MAX_BITS}")
    expected = -(-n * width // 8)
    d = zlib.decompressobj(-15)
    try:
        packed = d.decompress(data, expected + 1)
    except zlib.error as exc:
        raise ModelFileError(f"{what}: does not inflate ({exc})") from None
    if len(packed) != expected or not d.eof or d.unused_data:
        raise ModelFileError(f"{what}: does not inflate to exactly {expected} bytes")
    return unpack_bits(packed, width, n, what)


# ---------------------------------------------------------------------- one stream
def encode_stream(symbols: np.ndarray, width: int, codec: int | None = None
                  ) -> tuple[int, bytes]:
    """(codec, bytes) of a symbol stream of ``width``-bit symbols: ``codec`` or, when None,
    the smallest of PACKED, HUFFMAN and DEFLATE (ties: in that order)."""
    options = (PACKED, HUFFMAN, DEFLATE) if codec is None else (codec,)
    best: tuple[int, bytes] | None = None
    for c in options:
        if c == PACKED:
            data = pack_bits(symbols, width)
        elif c == HUFFMAN:
            try:
                data = huffman_encode(symbols, 1 << width)
            except ConfigError:
                if codec is not None:
                    raise
                continue  # more symbols than 15-bit codes can address: packed it is
        elif c == DEFLATE:
            data = deflate_encode(symbols, width)
        else:
            raise ConfigError(f"unknown codec {c!r}: choose from {CODECS}")
        if best is None or len(data) < len(best[1]):
            best = (c, data)
    return best


def decode_stream(codec: int, data: bytes, width: int, n: int, what: str) -> np.ndarray:
    """The ``n`` symbols of one stream (ModelFileError if it holds any other number)."""
    if codec == PACKED:
        return unpack_bits(data, width, n, what)
    if codec == DEFLATE:
        return deflate_decode(data, width, n, what)
    if codec == HUFFMAN:
        s = huffman_decode(data, 1 << width, what)
        if s.size != n:
            raise ModelFileError(f"{what}: {s.size} symbols, {n} expected")
        return s
    raise ModelFileError(f"{what}: unknown codec {codec}")


# ---------------------------------------------------------------------- relative indices
def gap_symbols(positions: np.ndarray, index_bits: int) -> np.ndarray:
    """Ascending flat positions -> index_bits-bit symbols: per nonzero, fillers (symbol M =
    2**index_bits - 1, "M zeros") then its remaining gap (< M)."""
    pos = np.asarray(positions, np.int64)
    gaps = np.diff(pos, prepend=-1) - 1
    if gaps.size and gaps.min() < 0:
        raise ConfigError("positions must be strictly ascending and >= 0")
    m = (1 << index_bits) - 1
    per = gaps // m + 1
    out = np.full(int(per.sum()), m, np.int64)
    out[np.cumsum(per) - 1] = gaps % m
    return out


def positions_from_gaps(symbols: np.ndarray, index_bits: int, nnz: int, numel: int,
                        what: str = "index stream") -> np.ndarray:
    """Inverse of ``gap_symbols``, checked against the expected count and the tensor size."""
    s = np.asarray(symbols, np.int64)
    m = (1 << index_bits) - 1
    final = s < m
    if int(final.sum()) != nnz:
        raise ModelFileError(f"{what}: {int(final.sum())} nonzeros, {nnz} expected")
    if s.size and not final[-1]:
        raise ModelFileError(f"{what}: ends inside a gap (trailing filler)")
    pos = np.cumsum(np.where(final, s + 1, m))[final] - 1
    if pos.size and pos[-1] >= numel:
        raise ModelFileError(f"{what}: a nonzero at position {int(pos[-1])} past the "
                             f"{numel} weights of the tensor")
    return pos


# ---------------------------------------------------------------------- one layer
_HEAD = struct.Struct("<BBBBBBBIII")  # version, ndim, bits, index_bits, codecs x2, flags,
#                                      nnz, k, index symbols
COMPACT = 1  # flags: positions are within the live rows x live columns (bitmaps stored)
F16_CODEBOOK = 2  # flags (version 2): the codebook is stored as float16 (exactly)
_HEAD2 = struct.Struct("<BBBBBB")     # version 2: version, ndim, bits, index_bits, codecs, flags


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, low first, high bit = more."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_varint(data: bytes, off: int) -> tuple[int, int]:
    """(value, next offset); at most 6 bytes (< 2**42), else ModelFileError via ValueError."""
    value = 0
    for i in range(6):
        if off + i >= len(data):
            raise ValueError("truncated")
        byte = data[off + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, off + i + 1
    raise ValueError("varint too long")


def _f16_exact(codebook: np.ndarray) -> bool:
    """Whether every codebook value is a float16 exactly (then 2 bytes each are stored)."""
    with np.errstate(over="ignore"):
        half = codebook.astype(np.float16)
    return bool(np.all(np.isfinite(half)) and np.array_equal(half.astype(np.float32), codebook))


@dataclass(frozen=True)
class EncodedLayer:
    """One quantized layer as stored: shape, widths, codebook and the two coded streams."""

    shape: tuple[int, ...]
    bits: int
    index_bits: int
    nnz: int
    index_symbols: int
    codebook: np.ndarray
    values_codec: int
    values: bytes
    indices_codec: int
    indices: bytes
    live: bytes = b""     # COMPACT: bitmaps of the live rows then live columns, packed

    @property
    def flags(self) -> int:
        return (COMPACT if self.live else 0) | (F16_CODEBOOK if _f16_exact(self.codebook) else 0)

    @property
    def stream_bytes(self) -> dict[str, int]:
        """Bytes of each part (as ``to_bytes()`` writes it, version 2): codebook, values,
        indices (with the live bitmaps), header (fields, dims, the values length)."""
        width = 2 if self.flags & F16_CODEBOOK else 4
        parts = {"codebook": width * self.codebook.size, "values": len(self.values),
                 "indices": len(self.indices) + len(self.live)}
        parts["header"] = len(self.to_bytes()) - sum(parts.values())
        return parts

    @property
    def nbytes(self) -> int:
        """Size of ``to_bytes()``."""
        return len(self.to_bytes())

    def to_bytes(self, version: int = FORMAT_VERSION) -> bytes:
        """A self-contained little-endian blob (``from_bytes`` reads it back). Version 2:
        six header bytes (version, ndim, bits, index bits, codecs as values | indices << 4,
        flags), then nnz, k, index symbols and the dims as LEB128 varints, the live bitmaps
        (COMPACT), the codebook (float16 when exact, flag F16_CODEBOOK, else float32), the
        values length (varint), the values stream, and the indices stream to the end.
        Version 1 (fixed-width fields, float32 codebook) is kept for tests and tools."""
        if version == 2:
            flags = self.flags
            codebook = self.codebook.astype("<f2" if flags & F16_CODEBOOK else "<f4")
            return b"".join([
                _HEAD2.pack(2, len(self.shape), self.bits, self.index_bits,
                            self.values_codec | self.indices_codec << 4, flags),
                *(_varint(int(v)) for v in (self.nnz, self.codebook.size, self.index_symbols,
                                            *self.shape)),
                self.live, codebook.tobytes(), _varint(len(self.values)), self.values,
                self.indices])
        return b"".join([
            _HEAD.pack(1, len(self.shape), self.bits, self.index_bits,
                       self.values_codec, self.indices_codec, self.flags & COMPACT, self.nnz,
                       self.codebook.size, self.index_symbols),
            struct.pack(f"<{len(self.shape)}I", *self.shape), self.live,
            self.codebook.astype("<f4").tobytes(),
            struct.pack("<I", len(self.values)), self.values,
            struct.pack("<I", len(self.indices)), self.indices])

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "quantized layer") -> "EncodedLayer":
        """Parse and check the structure of a blob (the streams are checked by decoding)."""
        data = bytes(data)
        if data[:1] == b"\x02":
            enc = cls._from_v2(data, what)
            enc.check(what)
            return enc
        try:
            (version, ndim, bits, ibits, vcodec, icodec, flags, nnz, k,
             nsym) = _HEAD.unpack_from(data)
            off = _HEAD.size
            if version != 1:
                raise ModelFileError(f"{what}: layer format version {version}, this minidnn "
                                     f"reads 1 and {FORMAT_VERSION}")
            if not 1 <= ndim <= MAX_NDIM:
                raise ModelFileError(f"{what}: {ndim} dimensions")
            shape = struct.unpack_from(f"<{ndim}I", data, off)
            off += 4 * ndim
            if flags & ~COMPACT:
                raise ModelFileError(f"{what}: unknown flags {flags:#x}")
            live = b""
            if flags & COMPACT:
                if not shape[0]:
                    raise ModelFileError(f"{what}: shape {shape} is not a weight tensor")
                nlive = _live_bytes(shape)
                live = data[off:off + nlive]
                if len(live) != nlive:
                    raise ModelFileError(f"{what}: truncated")
                off += nlive
            codebook = np.frombuffer(data, "<f4", k, off).astype(np.float32)
            off += 4 * k
            (nv,) = struct.unpack_from("<I", data, off)
            values = data[off + 4:off + 4 + nv]
            off += 4 + nv
            (ni,) = struct.unpack_from("<I", data, off)
            indices = data[off + 4:off + 4 + ni]
            off += 4 + ni
        except (struct.error, ValueError):
            raise ModelFileError(f"{what}: truncated") from None
        if len(values) != nv or len(indices) != ni:
            raise ModelFileError(f"{what}: truncated")
        if off != len(data):
            raise ModelFileError(f"{what}: {len(data) - off} trailing bytes")
        enc = cls(tuple(int(s) for s in shape), bits, ibits, nnz, nsym, codebook, vcodec, values,
                  icodec, indices, live)
        enc.check(what)
        return enc

    @classmethod
    def _from_v2(cls, data: bytes, what: str) -> "EncodedLayer":
        """The fields of a version 2 blob (``to_bytes``), every length checked."""
        try:
            _, ndim, bits, ibits, codecs, flags = _HEAD2.unpack_from(data)
            if not 1 <= ndim <= MAX_NDIM:
                raise ModelFileError(f"{what}: {ndim} dimensions")
            if flags & ~(COMPACT | F16_CODEBOOK):
                raise ModelFileError(f"{what}: unknown flags {flags:#x}")
            fields, off = [], _HEAD2.size
            for _ in range(3 + ndim):
                value, off = _read_varint(data, off)
                fields.append(value)
            nnz, k, nsym, shape = fields[0], fields[1], fields[2], tuple(fields[3:])
            live = b""
            if flags & COMPACT:
                if not shape[0] or np.prod(shape, dtype=object) >= 1 << 40:
                    raise ModelFileError(f"{what}: shape {shape} is not a weight tensor")
                nlive = _live_bytes(shape)
                live, off = data[off:off + nlive], off + nlive
            if k > 1 << MAX_BITS:
                raise ModelFileError(f"{what}: codebook of {k} values")
            dtype = "<f2" if flags & F16_CODEBOOK else "<f4"
            codebook = np.frombuffer(data, dtype, k, off).astype(np.float32)
            off += np.dtype(dtype).itemsize * k
            nv, off = _read_varint(data, off)
            values, indices = data[off:off + nv], data[off + nv:]
        except (struct.error, ValueError):
            raise ModelFileError(f"{what}: truncated") from None
        if len(values) != nv or (flags & COMPACT and len(live) != _live_bytes(shape)):
            raise ModelFileError(f"{what}: truncated")
        return cls(shape, bits, ibits, nnz, nsym, codebook, codecs & 15, values, codecs >> 4,
                   indices, live)

    def check(self, what: str = "quantized layer") -> None:
        """ModelFileError unless the header fields are consistent (streams not decoded)."""
        for name, b in (("bits", self.bits), ("index bits", self.index_bits)):
            if not MIN_BITS <= b <= MAX_BITS:
                raise ModelFileError(f"{what}: {name} {b} outside {MIN_BITS}..{MAX_BITS}")
        for name, c in (("values", self.values_codec), ("indices", self.indices_codec)):
            if c not in CODECS:
                raise ModelFileError(f"{what}: unknown codec {c} for the {name}")
        numel = int(np.prod(self.shape, dtype=np.int64))
        if any(s < 1 for s in self.shape) or numel >= 1 << 40:
            raise ModelFileError(f"{what}: shape {self.shape} is not a weight tensor")
        if self.nnz > numel:
            raise ModelFileError(f"{what}: {self.nnz} nonzeros in {numel} weights")
        if self.live and len(self.live) != _live_bytes(self.shape):
            raise ModelFileError(f"{what}: live bitmaps of {len(self.live)} bytes, "
                                 f"{_live_bytes(self.shape)} expected")
        if not self.nnz <= self.index_symbols <= numel:
            raise ModelFileError(f"{what}: {self.index_symbols} index symbols for {self.nnz} "
                                 f"nonzeros in {numel} weights")
        k = self.codebook.size
        if k > 1 << self.bits or (k == 0) != (self.nnz == 0):
            raise ModelFileError(f"{what}: codebook of {k} values for {self.bits}-bit "
                                 f"assignments and {self.nnz} nonzeros")
        if not np.all(np.isfinite(self.codebook)) or np.any(self.codebook == 0):
            raise ModelFileError(f"{what}: codebook holds NaN, inf or 0")


def _live_bytes(shape) -> int:
    """Bytes of the live-row and live-column bitmaps of a tensor viewed as a matrix."""
    rows = int(shape[0])
    return -(-(rows + int(np.prod(shape, dtype=np.int64)) // rows) // 8)


def compact_positions(record: QuantizedLayer) -> tuple[np.ndarray, bytes]:
    """Positions within the live rows x live columns, and the two bitmaps packed together."""
    rows, cols = record.matrix_shape
    r, c = record.positions // cols, record.positions % cols
    live_r, live_c = np.zeros(rows, np.int64), np.zeros(cols, np.int64)
    live_r[r], live_c[c] = 1, 1
    rmap, cmap = np.cumsum(live_r) - 1, np.cumsum(live_c) - 1
    inner = rmap[r] * int(live_c.sum()) + cmap[c]
    return inner, pack_bits(np.concatenate([live_r, live_c]), 1)


def _expand(enc: EncodedLayer, what: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(live rows, live columns, columns of the matrix, inner size) from a COMPACT layer."""
    rows = enc.shape[0]
    cols = int(np.prod(enc.shape, dtype=np.int64)) // rows
    live = unpack_bits(enc.live, 1, rows + cols, f"{what}: live bitmaps")
    live_r, live_c = np.flatnonzero(live[:rows]), np.flatnonzero(live[rows:])
    return live_r, live_c, cols, live_r.size * live_c.size


def encode_layer(record: QuantizedLayer, index_bits: int | None = None,
                 values_codec: int | None = None, indices_codec: int | None = None,
                 compact: bool | None = None) -> EncodedLayer:
    """Encode a record; ``index_bits`` None searches 1..12 for the smallest index stream;
    codecs None pick the smaller of packed and Huffman per stream; ``compact`` None picks the
    smaller of gaps over the whole matrix or within its live rows x live columns (pruning
    leaves whole rows and columns empty: LeNet-5's fc1 keeps ~55 of 500 rows)."""
    check_bits(record.bits)
    vcodec, vdata = encode_stream(record.assignments, record.bits, values_codec)
    choices = INDEX_BITS_SEARCH if index_bits is None else [check_bits(index_bits, "index_bits")]
    forms = [(record.positions, b"")] if compact is False else \
        [compact_positions(record)] if compact else [(record.positions, b""),
                                                    compact_positions(record)]
    best = None
    for positions, live in forms:
        for ib in choices:
            gaps = gap_symbols(positions, ib)
            icodec, idata = encode_stream(gaps, ib, indices_codec)
            if best is None or len(idata) + len(live) < len(best[3]) + len(best[4]):
                best = (ib, gaps.size, icodec, idata, live)
    ib, nsym, icodec, idata, live = best
    return EncodedLayer(tuple(record.shape), record.bits, ib, record.nnz, nsym,
                        np.asarray(record.codebook, np.float32), vcodec, vdata, icodec, idata,
                        live)


def decode_layer(enc: EncodedLayer | bytes, name: str = "", what: str | None = None
                 ) -> QuantizedLayer:
    """The record of an encoded layer (or blob), every stream checked (ModelFileError)."""
    what = what or (f"quantized layer {name}" if name else "quantized layer")
    if not isinstance(enc, EncodedLayer):
        enc = EncodedLayer.from_bytes(enc, what)
    enc.check(what)
    assignments = decode_stream(enc.values_codec, enc.values, enc.bits, enc.nnz,
                                f"{what}: values")
    if assignments.size and int(assignments.max()) >= enc.codebook.size:
        raise ModelFileError(f"{what}: assignment {int(assignments.max())} past the codebook "
                             f"of {enc.codebook.size} values")
    gaps = decode_stream(enc.indices_codec, enc.indices, enc.index_bits, enc.index_symbols,
                         f"{what}: indices")
    if enc.live:
        live_r, live_c, cols, inner = _expand(enc, what)
        pos = positions_from_gaps(gaps, enc.index_bits, enc.nnz, inner, f"{what}: indices")
        positions = live_r[pos // max(live_c.size, 1)] * cols + live_c[pos % max(live_c.size, 1)]
    else:
        numel = int(np.prod(enc.shape, dtype=np.int64))
        positions = positions_from_gaps(gaps, enc.index_bits, enc.nnz, numel,
                                        f"{what}: indices")
    return QuantizedLayer(name, enc.shape, enc.bits, enc.codebook.copy(),
                          assignments.astype(np.int32), positions.astype(np.int64))
