"""common/audio.py: G.711 against ITU-T G.711 reference points and the stdlib `audioop`
(an independent implementation, deprecated but present in 3.11), tone synthesis, WAV files,
and the tone check's accuracy and failure reasons."""

from __future__ import annotations

import math
import re
import struct
import subprocess
import warnings
from array import array

import pytest

from common.audio import (
    ToneCheck,
    ToneGenerator,
    alaw_decode,
    alaw_encode,
    analyze,
    noise,
    read_wav,
    rms_dbfs,
    tone,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)
from conftest import missing_peer, require_peer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13 removed it; the ITU points below still run
        audioop = None

ALL_SAMPLES = array("h", range(-32768, 32768))


@pytest.fixture
def audioop_reference():
    """The stdlib audioop as an independent G.711 reference (removed in Python 3.13): skip
    locally without it, fail under CI=true like any missing peer."""
    if audioop is None:
        missing_peer("the stdlib audioop module (removed in Python 3.13)")
    return audioop


needs_audioop = pytest.mark.usefixtures("audioop_reference")


# -- G.711 ----------------------------------------------------------------------------------

# ITU-T G.711 Tables 1 and 2: code points -> decoder output. µ-law outputs are the 14-bit
# values (full scale ±8031) times 4, A-law the 13-bit values (±4032) times 8, as audioop gives.
ULAW_DECODE_POINTS = {0xFF: 0, 0x7F: 0, 0xFE: 4 * 2, 0x7E: -4 * 2, 0xF0: 4 * 30, 0xEF: 4 * 33,
                      0x8F: 4 * 4191, 0x80: 4 * 8031, 0x00: -4 * 8031}
ALAW_DECODE_POINTS = {0xD5: 8 * 1, 0x55: -8 * 1, 0xD4: 8 * 3, 0xC5: 8 * 33, 0xA5: 8 * 2112,
                      0xAA: 8 * 4032, 0x2A: -8 * 4032}
ENCODE_POINTS = [  # (linear, µ-law, A-law)
    (0, 0xFF, 0xD5),
    (-1, 0x7E, 0x55),        # truncation toward minus infinity: -1 is a negative step
    (32767, 0x80, 0xAA),
    (-32768, 0x00, 0x2A),
    (8, 0xFE, 0xD5),
    (1000, 0xCE, 0xFA),
]


def test_ulaw_reference_points() -> None:
    assert list(ulaw_decode(bytes(ULAW_DECODE_POINTS))) == list(ULAW_DECODE_POINTS.values())


def test_alaw_reference_points() -> None:
    assert list(alaw_decode(bytes(ALAW_DECODE_POINTS))) == list(ALAW_DECODE_POINTS.values())


@pytest.mark.parametrize("linear,ulaw,alaw", ENCODE_POINTS)
def test_encode_reference_points(linear: int, ulaw: int, alaw: int) -> None:
    assert ulaw_encode([linear]) == bytes([ulaw])
    assert alaw_encode([linear]) == bytes([alaw])


def test_decoders_are_odd_symmetric() -> None:
    u, a = ulaw_decode(bytes(range(256))), alaw_decode(bytes(range(256)))
    for code in range(128):
        assert u[code] == -u[code | 0x80]
        assert a[code] == -a[code | 0x80]


def test_code_points_round_trip() -> None:
    codes = bytes(range(256))
    # Every A-law code is its own decode's encoding; µ-law too, except negative zero (0x7F).
    assert alaw_encode(alaw_decode(codes)) == codes
    assert ulaw_encode(ulaw_decode(codes)) == codes.replace(b"\x7f", b"\xff")


def test_quantisation_error_is_within_half_a_step() -> None:
    steps_u = sorted(set(ulaw_decode(bytes(range(256)))))
    steps_a = sorted(set(alaw_decode(bytes(range(256)))))
    for samples, codec, levels in ((ulaw_encode, ulaw_decode, steps_u), (alaw_encode, alaw_decode, steps_a)):
        decoded = codec(samples(ALL_SAMPLES))
        for x, y in zip(ALL_SAMPLES[::37], decoded[::37]):
            i = levels.index(y)
            lo = levels[i - 1] if i else y
            hi = levels[i + 1] if i + 1 < len(levels) else y
            assert lo <= x <= hi or abs(x) > 32000, (x, y)


@needs_audioop
def test_encoders_match_audioop_for_every_sample() -> None:
    raw = ALL_SAMPLES.tobytes()
    assert ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(raw, 2)
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(raw, 2)


@needs_audioop
def test_decoders_match_audioop_for_every_code() -> None:
    codes = bytes(range(256))
    assert ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)
    assert alaw_decode(codes).tobytes() == audioop.alaw2lin(codes, 2)


# -- synthesis and WAV ----------------------------------------------------------------------

def test_tone_level_and_phase_continuity() -> None:
    gen = ToneGenerator(1000, 0.5)
    joined = array("h")
    for _ in range(50):
        joined.extend(gen.read(160))
    assert joined == tone(1000, 1.0, 0.5)
    assert rms_dbfs(joined) == pytest.approx(20 * math.log10(0.5 * 32767 / 32768 / math.sqrt(2)), abs=0.01)
    with pytest.raises(ValueError, match="Nyquist"):
        ToneGenerator(4000)


def test_wav_round_trip(tmp_path) -> None:
    path = tmp_path / "t.wav"
    samples = tone(1000, 0.25)
    write_wav(path, samples)
    assert read_wav(path) == (samples, 8000)


def _riff(fmt: bytes, pcm: bytes, *, data_size: int | None = None, riff_size: int | None = None) -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(pcm) if data_size is None else data_size) + pcm
    return b"RIFF" + struct.pack("<I", 4 + len(chunks) if riff_size is None else riff_size) + b"WAVE" + chunks


def test_read_wav_tolerates_unfinalised_sizes_and_extensible(tmp_path) -> None:
    samples = tone(500, 0.1)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    path = tmp_path / "killed.wav"
    path.write_bytes(_riff(fmt, samples.tobytes(), data_size=0, riff_size=0))
    assert read_wav(path) == (samples, 8000)
    path.write_bytes(_riff(fmt, samples.tobytes(), data_size=0x7FFFFFF0))
    assert read_wav(path) == (samples, 8000)
    ext = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + \
        b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    path.write_bytes(_riff(ext, samples.tobytes()))
    assert read_wav(path) == (samples, 8000)
    stereo = array("h", [v for s in samples for v in (s, 7)])
    path.write_bytes(_riff(struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16), stereo.tobytes()))
    assert read_wav(path) == (samples, 8000)
    path.write_bytes(_riff(struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8), b"\xd5" * 10))
    with pytest.raises(ValueError, match="16-bit PCM"):
        read_wav(path)
    path.write_bytes(b"not a wav file")
    with pytest.raises(ValueError, match="RIFF"):
        read_wav(path)


# -- analysis and the tone check -------------------------------------------------------------

@pytest.mark.parametrize("freq", [1000.0, 997.0, 1010.0, 1003.7, 300.0, 3400.0])
def test_dominant_frequency_accuracy(freq: float) -> None:
    a = analyze(tone(freq, 2.0))
    assert a.frequency == pytest.approx(freq, abs=0.5)
    assert a.purity > 0.99
    assert all(abs(w.frequency - freq) < 0.5 for w in a.windows)


@pytest.mark.parametrize("freq", [1000.0, 997.0, 1009.0, 991.0])
def test_check_passes_within_tolerance(freq: float) -> None:
    verdict = ToneCheck(1000).check(tone(freq, 2.0))
    assert verdict, str(verdict)
    assert verdict.measured_hz == pytest.approx(freq, abs=0.5)
    assert verdict.rms_dbfs == pytest.approx(-9.03, abs=0.05)
    assert "PASS" in str(verdict)


@pytest.mark.parametrize("encode,decode", [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_check_passes_through_g711(encode, decode) -> None:
    assert ToneCheck(1000).check(decode(encode(tone(1000, 2.0))))


@pytest.mark.parametrize("freq", [1012.0, 985.0, 1500.0])
def test_wrong_frequency_fails_with_reason(freq: float) -> None:
    verdict = ToneCheck(1000).check(tone(freq, 2.0))
    assert not verdict
    assert verdict.reasons == (f"dominant frequency {freq:.1f} Hz is not 1000 ± 10 Hz",)
    assert "FAIL" in str(verdict) and "dominant frequency" in str(verdict)


def test_noise_fails_as_not_a_tone() -> None:
    verdict = ToneCheck(1000).check(noise(2.0))
    assert not verdict
    assert any(r.startswith("not a clean tone") for r in verdict.reasons), verdict.reasons


def test_quiet_tone_at_minus_60_dbfs_fails_on_level() -> None:
    quiet = tone(1000, 2.0, amplitude=math.sqrt(2) * 10 ** (-60 / 20))
    verdict = ToneCheck(1000).check(quiet)
    assert not verdict
    assert verdict.reasons == ("RMS -60.0 dBFS is below -20 dBFS",)


def test_digital_silence_fails_as_no_audio() -> None:
    verdict = ToneCheck(1000).check(array("h", bytes(2 * 16000)))
    assert verdict.reasons == ("no audio: 2.00 s of digital silence",)
    assert ToneCheck(1000).check(array("h")).reasons == ("no audio: the recording is empty",)


def test_too_short_fails() -> None:
    verdict = ToneCheck(1000).check(tone(1000, 0.5))
    assert verdict.reasons == ("only 0.50 s of audio, want 1 s",)


def test_leading_silence_before_media_is_not_counted() -> None:
    samples = array("h", bytes(2 * 8000)) + tone(1000, 2.0)
    verdict = ToneCheck(1000).check(samples)
    assert verdict, str(verdict)
    assert verdict.active_seconds == pytest.approx(2.0)
    assert verdict.rms_dbfs == pytest.approx(-9.03, abs=0.05)


def test_tone_that_changes_midway_fails_on_agreement() -> None:
    samples = tone(1000, 2.0) + tone(1500, 1.0)
    verdict = ToneCheck(1000).check(samples)
    assert verdict.reasons == ("only 4 of 6 windows carry 1000 Hz",)


def test_check_wav(tmp_path) -> None:
    path = tmp_path / "t.wav"
    write_wav(path, tone(1500, 1.5))
    assert ToneCheck(1500).check_wav(path)


# -- sox as a loose independent reference -----------------------------------------------------

@pytest.mark.interop
def test_sox_agrees_loosely(tmp_path) -> None:
    require_peer("sox")
    theirs = tmp_path / "sox.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(theirs),
                    "synth", "2", "sine", "1000", "vol", "0.5"], check=True, capture_output=True)
    verdict = ToneCheck(1000).check_wav(theirs)
    assert verdict, str(verdict)
    assert verdict.rms_dbfs == pytest.approx(-9.03, abs=0.1)
    ours = tmp_path / "ours.wav"
    write_wav(ours, tone(997, 2.0))
    out = subprocess.run(["sox", str(ours), "-n", "stat"], check=True, capture_output=True, text=True).stderr
    rough = float(re.search(r"Rough\s+frequency:\s+(\d+)", out).group(1))
    rms = float(re.search(r"RMS\s+amplitude:\s+([\d.]+)", out).group(1))
    assert rough == pytest.approx(997, rel=0.05)         # sox's estimate is rough by design
    assert 20 * math.log10(rms) == pytest.approx(rms_dbfs(tone(997, 2.0)), abs=0.1)
