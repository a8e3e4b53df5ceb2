#!/usr/bin/env python3
"""Reference fixtures for audio decoding, resampling and Whisper log-mel features.

Writes tests/fixtures/audio/:
  clips/<name>.<ext>          the encoded inputs (WAV written byte by byte here, FLAC/OGG/MP3
                              through soundfile, speech through espeak-ng)
  expected/<name>.safetensors per clip:
      samples_16k      F32 [L]        librosa.load(path, sr=16000)[0]
      mel80, mel128    F32 [N, W]     WhisperFeatureExtractor(feature_size=N) on samples_16k
                                      (30 s padding). Frames W..3000-1 all equal <name>_tail
                                      (checked here), so only the first W frames are stored.
      mel80_tail, mel128_tail  F32 [1]
      mel80_nopad, mel128_nopad F32 [N, L//160]  same extractor, padding="longest",
                                      truncation=False (no fixed 30 s padding), when L > 200
      mel128_300s, mel128_300s_tail   chunk_length=300 (Qwen2.5-Omni), long clip only
  manifest.json               clip list with header facts and the reference versions

Deterministic: fixed seeds, fixed Ogg serial numbers, no timestamps. Regenerate with
  tools/refgen/refgen.sh audio
(needs espeak-ng). The reference for the log-mel is the torch path of the extractor, the one
transformers uses whenever torch is importable; the generator refuses to run without torch.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import librosa
import numpy as np
import soundfile as sf
import soxr
import torch
import transformers
from safetensors.numpy import save_file
from transformers import WhisperFeatureExtractor
from transformers.utils import is_torch_available

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIXTURES, "audio")
SR = 16000


# ------------------------------------------------------------------------------------------
# Encoders

def wav_bytes(frames, sr, subtype, extensible=False):
    """RIFF/WAVE with one fmt and one data chunk. frames: [n, ch] integers (PCM) or floats."""
    n, ch = frames.shape
    if subtype == "PCM_U8":
        bits, tag, data = 8, 1, (frames + 128).astype(np.uint8).tobytes()
    elif subtype == "PCM_16":
        bits, tag, data = 16, 1, frames.astype("<i2").tobytes()
    elif subtype == "PCM_24":
        v = frames.astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3]
        bits, tag, data = 24, 1, v.tobytes()
    elif subtype == "PCM_32":
        bits, tag, data = 32, 1, frames.astype("<i4").tobytes()
    elif subtype == "FLOAT":
        bits, tag, data = 32, 3, frames.astype("<f4").tobytes()
    elif subtype == "DOUBLE":
        bits, tag, data = 64, 3, frames.astype("<f8").tobytes()
    else:
        raise ValueError(subtype)
    block = ch * bits // 8
    if extensible:
        guid = struct.pack("<IHH", tag, 0x0000, 0x0010) + bytes.fromhex("800000aa00389b71")
        mask = (1 << ch) - 1
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, ch, sr, sr * block, block, bits, 22, bits, mask)
        fmt += guid
    else:
        fmt = struct.pack("<HHIIHH", tag, ch, sr, sr * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    if len(data) % 2:
        body += b"\0"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _ogg_crc(data):
    crc = 0
    for b in data:
        crc ^= b << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def ogg_fix_serial(data, serial=0x54534552):
    """libsndfile picks a random Ogg stream serial; pin it (and redo page CRCs)."""
    out = bytearray(data)
    pos = 0
    while pos < len(out):
        assert out[pos:pos + 4] == b"OggS", "bad ogg page"
        nseg = out[pos + 26]
        size = 27 + nseg + sum(out[pos + 27:pos + 27 + nseg])
        struct.pack_into("<I", out, pos + 14, serial)
        struct.pack_into("<I", out, pos + 22, 0)
        struct.pack_into("<I", out, pos + 22, _ogg_crc(bytes(out[pos:pos + size])))
        pos += size
    return bytes(out)


def sf_bytes(x, sr, fmt, subtype):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x." + fmt.lower())
        sf.write(p, x, sr, format=fmt, subtype=subtype)
        with open(p, "rb") as f:
            data = f.read()
    return ogg_fix_serial(data) if fmt == "OGG" else data


def espeak_bytes(text):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "speech.wav")
        subprocess.run(["espeak-ng", "-v", "en", "-s", "160", "-w", p, text], check=True)
        with open(p, "rb") as f:
            return f.read()


# ------------------------------------------------------------------------------------------
# Signals (float64 in [-1, 1]); PCM clips are quantised here so the file is exact.

def t_axis(sr, seconds):
    return np.arange(int(round(sr * seconds))) / sr


def sine(sr, seconds, f=440.0, a=0.5):
    return a * np.sin(2 * np.pi * f * t_axis(sr, seconds))


def tones(sr, seconds, fs=(300.0, 1000.0, 3100.0), a=0.25):
    t = t_axis(sr, seconds)
    return sum(a * np.sin(2 * np.pi * f * t + i) for i, f in enumerate(fs))


def chirp(sr, seconds, f0=100.0, f1=7000.0, a=0.4):
    t = t_axis(sr, seconds)
    k = (f1 - f0) / seconds
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t)
    return a * env * np.sin(2 * np.pi * (f0 * t + 0.5 * k * t * t))


def noise(sr, seconds, seed, a=0.2):
    rng = np.random.default_rng(seed)
    return np.clip(a * rng.standard_normal(int(round(sr * seconds))), -0.99, 0.99)


def pcm(x, bits):
    scale = float(1 << (bits - 1))
    return np.clip(np.round(x * scale), -scale, scale - 1).astype(np.int64)


def stack(*chans):
    return np.stack(chans, axis=1)


def build_clips():
    """(name, ext, bytes, nopad). Keep clips short: every 16 kHz sample is stored again."""
    c = []
    # The worked example of the spec: 5 s, 16 kHz, 0.5 sin(2 pi 440 t).
    c.append(("sine440_16k_pcm16", "wav", wav_bytes(pcm(stack(sine(SR, 5.0)), 16), SR, "PCM_16"), True))
    c.append(("noise_22k_float", "wav",
              wav_bytes(stack(noise(22050, 1.5, 1)).astype(np.float32), 22050, "FLOAT"), True))
    c.append(("speech_espeak_22k", "wav",
              espeak_bytes("Tessera turns sound into numbers. Hello, world."), True))
    c.append(("silence_16k", "wav", wav_bytes(np.zeros((SR, 1), np.int64), SR, "PCM_16"), True))
    c.append(("tiny_50ms_16k", "wav", wav_bytes(pcm(stack(chirp(SR, 0.05)), 16), SR, "PCM_16"), True))
    c.append(("long_45s_16k", "flac",
              sf_bytes(pcm(stack(chirp(SR, 45.0)), 16).astype(np.int16), SR, "FLAC", "PCM_16"), False))
    c.append(("tones_8k_pcm16", "wav", wav_bytes(pcm(stack(tones(8000, 2.0)), 16), 8000, "PCM_16"), True))
    c.append(("stereo_44k_flac", "flac",
              sf_bytes(pcm(stack(sine(44100, 2.0), noise(44100, 2.0, 2)), 16).astype(np.int16),
                       44100, "FLAC", "PCM_16"), True))
    c.append(("stereo_48k_ogg", "ogg",
              sf_bytes(stack(tones(48000, 2.0), chirp(48000, 2.0)).astype(np.float32), 48000,
                       "OGG", "VORBIS"), True))
    c.append(("pcm8_11k", "wav", wav_bytes(pcm(stack(tones(11025, 1.5)), 8), 11025, "PCM_U8"), True))
    c.append(("pcm24_32k", "wav", wav_bytes(pcm(stack(chirp(32000, 1.5)), 24), 32000, "PCM_24"), True))
    c.append(("pcm32_48k_stereo", "wav",
              wav_bytes(pcm(stack(tones(48000, 1.5), noise(48000, 1.5, 3)), 32), 48000, "PCM_32"),
              True))
    c.append(("double_44k", "wav", wav_bytes(stack(chirp(44100, 1.0)), 44100, "DOUBLE"), True))
    # Channel means: numpy adds fewer than 8 channels in order, 8 or more pairwise.
    quad = stack(*[sine(SR, 1.0, 200.0 * (i + 1), 0.2) for i in range(4)])
    c.append(("quad_16k_wavex", "wav", wav_bytes(pcm(quad, 16), SR, "PCM_16", extensible=True), True))
    octo = stack(*[noise(22050, 0.5, 10 + i, 0.1) for i in range(8)])
    c.append(("octo_22k_float", "wav", wav_bytes(octo.astype(np.float32), 22050, "FLOAT",
                                                  extensible=True), True))
    c.append(("stereo_44k_mp3", "mp3",
              sf_bytes(stack(tones(44100, 2.0), sine(44100, 2.0, 660.0)).astype(np.float32),
                       44100, "MP3", "MPEG_LAYER_III"), True))
    c.append(("opus_48k_ogg", "ogg",
              sf_bytes(stack(chirp(48000, 1.0)).astype(np.float32), 48000, "OGG", "OPUS"), True))
    c.append(("aiff_24k_pcm16", "aiff",
              sf_bytes(pcm(stack(tones(24000, 0.75)), 16).astype(np.int16), 24000, "AIFF",
                       "PCM_16"), True))
    return c


# ------------------------------------------------------------------------------------------
# Reference outputs

def mel_with_tail(fe, x, n_frames):
    """Extractor output [N, n_frames]; returns (head [N, W], tail [1]) with every frame >= W
    equal to tail."""
    m = fe(x, sampling_rate=SR, return_tensors="np")["input_features"][0]
    assert m.shape == (fe.feature_size, n_frames), m.shape
    last = m[:, -1]
    if not np.all(last == last[0]):  # the audio reaches the last frame: store everything
        return np.ascontiguousarray(m), np.array([0.0], np.float32)
    w = n_frames
    while w > 0 and np.all(m[:, w - 1] == last[0]):
        w -= 1
    return np.ascontiguousarray(m[:, :w]), np.array([last[0]], np.float32)


def main():
    assert is_torch_available(), "the reference is the torch path of WhisperFeatureExtractor"
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "clips"))
    os.makedirs(os.path.join(OUT, "expected"))
    fes = {n: WhisperFeatureExtractor(feature_size=n) for n in (80, 128)}
    fe300 = WhisperFeatureExtractor(feature_size=128, chunk_length=300)
    manifest = {
        "reference": {
            "samples_16k": "librosa.load(path, sr=16000) (soundfile + soxr_hq)",
            "mel": "transformers WhisperFeatureExtractor, torch path (_torch_extract_fbank_features)",
            "mel_tail": "frames past the stored width equal <key>_tail",
            "librosa": librosa.__version__,
            "soundfile": sf.__version__,
            "libsndfile": sf.__libsndfile_version__,
            "soxr": soxr.__version__,
            "libsoxr": soxr.__libsoxr_version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "clips": [],
    }
    for name, ext, data, nopad in build_clips():
        key = name
        rel = f"clips/{key}.{ext}"
        path = os.path.join(OUT, rel)
        with open(path, "wb") as f:
            f.write(data)
        info = sf.info(path)
        y, sr = librosa.load(path, sr=SR)
        assert sr == SR and y.dtype == np.float32 and y.ndim == 1
        tensors = {"samples_16k": y}
        entry = {
            "name": key,
            "file": rel,
            "format": {"WAV": "wav", "WAVEX": "wav", "FLAC": "flac", "OGG": "ogg",
                       "MP3": "mp3", "AIFF": "aiff"}[info.format],
            "subtype": info.subtype,
            "sample_rate": info.samplerate,
            "channels": info.channels,
            "frames": info.frames,
            "samples_16k": int(y.shape[0]),
            "mel": {},
        }
        for n, fe in fes.items():
            head, tail = mel_with_tail(fe, y, 3000)
            tensors[f"mel{n}"] = head
            tensors[f"mel{n}_tail"] = tail
            entry["mel"][f"mel{n}"] = {"n_mels": n, "pad_to_samples": 480000, "frames": 3000}
            if nopad and y.shape[0] > 200:
                m = fe(y, sampling_rate=SR, padding="longest", truncation=False,
                       return_tensors="np")["input_features"][0]
                assert m.shape == (n, y.shape[0] // 160), m.shape
                tensors[f"mel{n}_nopad"] = np.ascontiguousarray(m)
                entry["mel"][f"mel{n}_nopad"] = {"n_mels": n, "pad_to_samples": 0,
                                                 "frames": int(m.shape[1])}
        if name.startswith("long_"):
            head, tail = mel_with_tail(fe300, y, 30000)
            tensors["mel128_300s"] = head
            tensors["mel128_300s_tail"] = tail
            entry["mel"]["mel128_300s"] = {"n_mels": 128, "pad_to_samples": 4800000,
                                           "frames": 30000}
        for k, v in tensors.items():
            assert v.dtype == np.float32, k
        save_file(tensors, os.path.join(OUT, "expected", f"{key}.safetensors"),
                  metadata={"clip": rel})
        entry["expected"] = f"expected/{key}.safetensors"
        manifest["clips"].append(entry)
        print(f"{key}: {info.format}/{info.subtype} {info.samplerate} Hz x{info.channels}, "
              f"{info.frames} frames -> {y.shape[0]} samples")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(OUT) for fn in fns)
    print(f"{len(manifest['clips'])} clips, {total / 2**20:.1f} MiB in {OUT}")


if __name__ == "__main__":
    sys.exit(main())
