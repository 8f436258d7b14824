"""Audio for the line side and `make demo`: G.711, tones, WAV files and the tone check.

Pure Python, no numpy. Samples are signed 16-bit integers in `array('h')` (any sequence of ints
is accepted as input), at 8000 Hz unless said otherwise.

- G.711 (ITU-T G.711, 1988): `ulaw_encode`/`ulaw_decode`, `alaw_encode`/`alaw_decode`, table
  driven. Encoding follows the reference coder's integer rules (µ-law on the 14 most significant
  bits, A-law on the 13 most significant bits, the input truncated toward minus infinity), so
  results equal the stdlib `audioop.lin2ulaw`/`lin2alaw` byte for byte; decoding gives the
  segment mid-points scaled to 16 bits (µ-law ±32124 full scale, A-law ±32256), as `audioop`.
- `tone()` and `ToneGenerator` (phase-continuous, for 20 ms packets) synthesise sines.
- `read_wav`/`write_wav`: 16-bit PCM mono via the stdlib `wave` module; `read_wav` also reads
  files whose RIFF/data sizes were never finalised (a recorder killed mid-call writes those).
- `analyze()` measures RMS (dBFS, full scale = 32768) and the dominant frequency per 0.5 s
  window: Hann window, radix-2 FFT zero-padded to 4096 points (1.95 Hz bins), quadratic
  interpolation of the log magnitude around the peak (error well under 0.5 Hz for a clean tone).
  `ToneCheck(expected_hz).check(...)` turns that into a `ToneVerdict` that says why it failed.
"""

from __future__ import annotations

import cmath
import math
import random
import statistics
import struct
import wave
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

__all__ = [
    "FULL_SCALE",
    "ToneAnalysis",
    "ToneCheck",
    "ToneGenerator",
    "ToneVerdict",
    "WindowAnalysis",
    "alaw_decode",
    "alaw_encode",
    "analyze",
    "dbfs",
    "dominant_frequency",
    "noise",
    "read_wav",
    "rms",
    "rms_dbfs",
    "tone",
    "ulaw_decode",
    "ulaw_encode",
    "write_wav",
]

RATE = 8000
FULL_SCALE = 32768.0

# --------------------------------------------------------------------------------------------
# G.711

_ULAW_CLIP = 8159          # 14-bit magnitude limit before the bias
_ULAW_BIAS14 = 33          # the 0x84 bias of the 16-bit formulation, on 14 bits


def _segment(value: int, ends: Sequence[int]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


_ULAW_SEG_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _ulaw_from14(pcm: int) -> int:
    """One 14-bit signed sample to a µ-law byte."""
    if pcm < 0:
        magnitude, mask = -pcm, 0x7F
    else:
        magnitude, mask = pcm, 0xFF
    magnitude = min(magnitude, _ULAW_CLIP) + _ULAW_BIAS14
    seg = _segment(magnitude, _ULAW_SEG_ENDS)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((magnitude >> (seg + 1)) & 0x0F)) ^ mask


def _alaw_from13(pcm: int) -> int:
    """One 13-bit signed sample to an A-law byte (even bits inverted: XOR 0x55)."""
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = _segment(pcm, _ALAW_SEG_ENDS)
    if seg >= 8:
        return 0x7F ^ mask
    value = seg << 4
    value |= ((pcm >> 1) if seg < 2 else (pcm >> seg)) & 0x0F
    return value ^ mask


def _ulaw_to_linear(byte: int) -> int:
    u = ~byte & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return -magnitude if u & 0x80 else magnitude


def _alaw_to_linear(byte: int) -> int:
    a = byte ^ 0x55
    seg, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = (mantissa << 4) + 8
    if seg:
        magnitude = (magnitude + 0x100) << (seg - 1)
    return magnitude if a & 0x80 else -magnitude


# Index with the sample's top 14 (µ-law) or 13 (A-law) bits as an unsigned value.
_ULAW_ENC = bytes(_ulaw_from14(i - 0x4000 if i & 0x2000 else i) for i in range(0x4000))
_ALAW_ENC = bytes(_alaw_from13(i - 0x2000 if i & 0x1000 else i) for i in range(0x2000))
_ULAW_DEC = array("h", (_ulaw_to_linear(b) for b in range(256)))
_ALAW_DEC = array("h", (_alaw_to_linear(b) for b in range(256)))


def ulaw_encode(samples: Iterable[int]) -> bytes:
    table = _ULAW_ENC
    return bytes([table[(s >> 2) & 0x3FFF] for s in samples])


def alaw_encode(samples: Iterable[int]) -> bytes:
    table = _ALAW_ENC
    return bytes([table[(s >> 3) & 0x1FFF] for s in samples])


def ulaw_decode(data: bytes) -> array:
    table = _ULAW_DEC
    return array("h", [table[b] for b in data])


def alaw_decode(data: bytes) -> array:
    table = _ALAW_DEC
    return array("h", [table[b] for b in data])


# --------------------------------------------------------------------------------------------
# Synthesis


def _clip16(value: float) -> int:
    return max(-32768, min(32767, round(value)))


class ToneGenerator:
    """A phase-continuous sine: `read(160)` gives the next 20 ms at 8 kHz, forever.
    `amplitude` is the peak as a fraction of full scale (0.5 -> RMS -9.03 dBFS)."""

    def __init__(self, frequency: float, amplitude: float = 0.5, rate: int = RATE) -> None:
        if not 0 <= amplitude <= 1:
            raise ValueError(f"amplitude {amplitude} is not within 0..1")
        if not 0 <= frequency < rate / 2:
            raise ValueError(f"frequency {frequency} Hz is not below the Nyquist frequency {rate / 2} Hz")
        self.frequency = frequency
        self.amplitude = amplitude
        self.rate = rate
        self.position = 0  # samples produced so far

    def read(self, count: int) -> array:
        step = 2 * math.pi * self.frequency / self.rate
        peak = self.amplitude * 32767
        start = self.position
        self.position += count
        return array("h", [_clip16(peak * math.sin(step * n)) for n in range(start, start + count)])


def tone(frequency: float, seconds: float, amplitude: float = 0.5, rate: int = RATE) -> array:
    return ToneGenerator(frequency, amplitude, rate).read(round(seconds * rate))


def noise(seconds: float, amplitude: float = 0.5, rate: int = RATE, seed: int | None = 1) -> array:
    """Uniform white noise (for tests of the tone check), reproducible with `seed`."""
    rnd = random.Random(seed)
    peak = amplitude * 32767
    return array("h", [_clip16(rnd.uniform(-peak, peak)) for _ in range(round(seconds * rate))])


# --------------------------------------------------------------------------------------------
# WAV


def write_wav(path: str | Path, samples: Iterable[int], rate: int = RATE) -> None:
    """16-bit PCM mono WAV (what baresip's aufile reads for PCMU/PCMA)."""
    data = samples if isinstance(samples, array) and samples.typecode == "h" else array("h", samples)
    if data.itemsize != 2:
        raise ValueError("array('h') must be 16-bit here")
    pcm = data.tobytes() if struct.pack("=h", 1) == b"\x01\x00" else _byteswapped(data)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def _byteswapped(data: array) -> bytes:
    copy = array("h", data)
    copy.byteswap()
    return copy.tobytes()


def read_wav(path: str | Path) -> tuple[array, int]:
    """(samples, rate) of a 16-bit PCM WAV; a stereo file is reduced to its first channel.
    Tolerates zero or oversized RIFF/data lengths (unfinalised recordings) and
    WAVE_FORMAT_EXTENSIBLE headers, which the stdlib reader of Python 3.11 refuses."""
    raw = Path(path).read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, pcm = 12, None, None
    while pos + 8 <= len(raw):
        chunk_id, size = raw[pos:pos + 4], struct.unpack_from("<I", raw, pos + 4)[0]
        body_start = pos + 8
        if chunk_id == b"data":
            end = len(raw) if size == 0 or body_start + size > len(raw) else body_start + size
            pcm = raw[body_start:end]
            break
        if chunk_id == b"fmt ":
            fmt = raw[body_start:body_start + size]
        pos = body_start + size + (size & 1)
    if fmt is None or len(fmt) < 16:
        raise ValueError(f"{path}: no fmt chunk")
    if pcm is None:
        raise ValueError(f"{path}: no data chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == 0xFFFE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # first two bytes of the SubFormat GUID
    if tag != 1 or bits != 16 or channels < 1:
        raise ValueError(f"{path}: only 16-bit PCM is supported (format {tag:#x}, {bits} bits)")
    frame = 2 * channels
    pcm = pcm[:len(pcm) - len(pcm) % frame]
    samples = array("h")
    samples.frombytes(pcm)
    if struct.pack("=h", 1) != b"\x01\x00":
        samples.byteswap()
    if channels > 1:
        samples = samples[::channels]
    return samples, rate


# --------------------------------------------------------------------------------------------
# Analysis


def rms(samples: Sequence[int]) -> float:
    """Root mean square as a fraction of full scale (32768)."""
    if not samples:
        return 0.0
    return math.sqrt(math.fsum(s * s for s in samples) / len(samples)) / FULL_SCALE


def dbfs(level: float) -> float:
    """A level (fraction of full scale) in dBFS; silence is -inf."""
    return 20 * math.log10(level) if level > 0 else -math.inf


def rms_dbfs(samples: Sequence[int]) -> float:
    return dbfs(rms(samples))


_FFT_SIZE = 4096
_TWIDDLES: dict[int, list[complex]] = {}
_HANN: dict[int, list[float]] = {}


def _fft(values: list[complex]) -> list[complex]:
    """In-place iterative radix-2 FFT (len a power of two)."""
    n = len(values)
    j = 0
    for i in range(1, n):           # bit-reversal permutation
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            values[i], values[j] = values[j], values[i]
    tw = _TWIDDLES.get(n)
    if tw is None:
        tw = _TWIDDLES[n] = [cmath.exp(-2j * math.pi * k / n) for k in range(n // 2)]
    size = 2
    while size <= n:
        half, stride = size // 2, n // size
        factors = tw[::stride][:half]
        for start in range(0, n, size):
            for k in range(half):
                a = start + k
                b = a + half
                t = values[b] * factors[k]
                values[b] = values[a] - t
                values[a] = values[a] + t
        size *= 2
    return values


def _hann(n: int) -> list[float]:
    w = _HANN.get(n)
    if w is None:
        w = _HANN[n] = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)] if n > 1 else [1.0]
    return w


def dominant_frequency(samples: Sequence[int], rate: int = RATE) -> tuple[float | None, float]:
    """(frequency in Hz, purity) of the strongest sinusoid in `samples` (at most 4096 of them).

    Purity is the share of the spectral energy (DC excluded) within ±4 bins of the peak: ~1.0
    for a clean tone, a few percent for white noise. (None, 0.0) for silence."""
    n = len(samples)
    if n < 16:
        return None, 0.0
    if n > _FFT_SIZE:
        raise ValueError(f"at most {_FFT_SIZE} samples per window")
    mean = sum(samples) / n
    w = _hann(n)
    spectrum = _fft([complex((s - mean) * w[i]) for i, s in enumerate(samples)] +
                    [0j] * (_FFT_SIZE - n))
    power = [abs(c) ** 2 for c in spectrum[:_FFT_SIZE // 2]]
    power[0] = 0.0
    total = math.fsum(power)
    if total <= 0:
        return None, 0.0
    peak = max(range(1, len(power) - 1), key=power.__getitem__)
    purity = math.fsum(power[max(1, peak - 4):peak + 5]) / total
    # Quadratic interpolation on log magnitude (exact for a Gaussian peak, close for Hann).
    a, b, c = (math.log(max(power[peak + d], 1e-300)) for d in (-1, 0, 1))
    denom = a - 2 * b + c
    offset = 0.5 * (a - c) / denom if denom < 0 else 0.0
    offset = max(-0.5, min(0.5, offset))
    return (peak + offset) * rate / _FFT_SIZE, purity


@dataclass(frozen=True)
class WindowAnalysis:
    start: float                # seconds from the beginning of the recording
    length: float               # seconds
    rms_dbfs: float
    frequency: float | None
    purity: float


@dataclass(frozen=True)
class ToneAnalysis:
    rate: int
    duration: float             # seconds
    rms_dbfs: float             # the whole recording
    windows: tuple[WindowAnalysis, ...]
    active: tuple[WindowAnalysis, ...]   # windows within 30 dB of the loudest (the call's audio)
    active_rms_dbfs: float
    frequency: float | None     # median dominant frequency of the active windows
    purity: float               # median purity of the active windows

    @property
    def active_seconds(self) -> float:
        return sum(w.length for w in self.active)


def analyze(samples: Sequence[int], rate: int = RATE, *, window: float = 0.5,
            max_windows: int = 40, active_range_db: float = 30.0) -> ToneAnalysis:
    """Per-window RMS and dominant frequency. Windows are `window` seconds, back to back; with
    more than `max_windows` an evenly spaced subset is analysed (pure-Python FFT cost)."""
    size = min(_FFT_SIZE, max(16, round(window * rate)))
    n_windows = len(samples) // size
    picks = range(n_windows) if n_windows <= max_windows else \
        sorted({round(i * (n_windows - 1) / (max_windows - 1)) for i in range(max_windows)})
    windows = []
    for i in picks:
        chunk = samples[i * size:(i + 1) * size]
        level = rms_dbfs(chunk)
        freq, purity = dominant_frequency(chunk, rate) if level > -math.inf else (None, 0.0)
        windows.append(WindowAnalysis(i * size / rate, size / rate, level, freq, purity))
    loudest = max((w.rms_dbfs for w in windows), default=-math.inf)
    active = tuple(w for w in windows if w.rms_dbfs > -math.inf and w.rms_dbfs >= loudest - active_range_db)
    if active:
        # Mean power of equal-length windows, back in dBFS.
        active_rms = dbfs(math.sqrt(math.fsum(10 ** (w.rms_dbfs / 10) for w in active) / len(active)))
        freqs = [w.frequency for w in active if w.frequency is not None]
        frequency = statistics.median(freqs) if freqs else None
        purity = statistics.median(w.purity for w in active)
    else:
        active_rms, frequency, purity = -math.inf, None, 0.0
    return ToneAnalysis(rate=rate, duration=len(samples) / rate, rms_dbfs=rms_dbfs(samples),
                        windows=tuple(windows), active=active, active_rms_dbfs=active_rms,
                        frequency=frequency, purity=purity)


@dataclass(frozen=True)
class ToneVerdict:
    ok: bool
    expected_hz: float
    measured_hz: float | None
    rms_dbfs: float
    active_seconds: float
    reasons: tuple[str, ...]
    analysis: ToneAnalysis = field(repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        measured = "none" if self.measured_hz is None else f"{self.measured_hz:.1f} Hz"
        head = (f"tone {self.expected_hz:g} Hz: {'PASS' if self.ok else 'FAIL'} (measured {measured}, "
                f"RMS {self.rms_dbfs:.1f} dBFS over {self.active_seconds:.1f} s)")
        return head if self.ok else head + ": " + "; ".join(self.reasons)


@dataclass(frozen=True)
class ToneCheck:
    """The audio check of issue 5: dominant frequency `expected_hz` ± `tolerance_hz`, RMS of the
    active audio above `min_rms_dbfs`, at least `min_seconds` of it, a clean tone (median purity
    >= `min_purity`), and at least `min_agreement` of the active windows on the frequency."""

    expected_hz: float
    tolerance_hz: float = 10.0
    min_rms_dbfs: float = -20.0
    min_seconds: float = 1.0
    min_purity: float = 0.5
    min_agreement: float = 0.8

    def check(self, samples: Sequence[int], rate: int = RATE) -> ToneVerdict:
        return self.check_analysis(analyze(samples, rate))

    def check_wav(self, path: str | Path) -> ToneVerdict:
        samples, rate = read_wav(path)
        return self.check(samples, rate)

    def check_analysis(self, a: ToneAnalysis) -> ToneVerdict:
        reasons = []
        if not a.active:
            reasons.append(f"no audio: {a.duration:.2f} s of digital silence" if a.duration
                           else "no audio: the recording is empty")
        else:
            if a.active_rms_dbfs < self.min_rms_dbfs:
                reasons.append(f"RMS {a.active_rms_dbfs:.1f} dBFS is below {self.min_rms_dbfs:g} dBFS")
            if a.active_seconds < self.min_seconds:
                reasons.append(f"only {a.active_seconds:.2f} s of audio, want {self.min_seconds:g} s")
            if a.purity < self.min_purity:
                reasons.append(f"not a clean tone: {a.purity:.0%} of the energy at the peak "
                               f"(want {self.min_purity:.0%}), noise or several tones")
            if a.frequency is None or abs(a.frequency - self.expected_hz) > self.tolerance_hz:
                measured = "none" if a.frequency is None else f"{a.frequency:.1f} Hz"
                reasons.append(f"dominant frequency {measured} is not {self.expected_hz:g} "
                               f"± {self.tolerance_hz:g} Hz")
            else:
                agree = sum(1 for w in a.active if w.frequency is not None
                            and abs(w.frequency - self.expected_hz) <= self.tolerance_hz)
                if agree < self.min_agreement * len(a.active):
                    reasons.append(f"only {agree} of {len(a.active)} windows carry "
                                   f"{self.expected_hz:g} Hz")
        return ToneVerdict(ok=not reasons, expected_hz=self.expected_hz, measured_hz=a.frequency,
                           rms_dbfs=a.active_rms_dbfs, active_seconds=a.active_seconds,
                           reasons=tuple(reasons), analysis=a)
