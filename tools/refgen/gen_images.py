#!/usr/bin/env python3
"""Writes the image-decoding fixtures: tests/fixtures/images/.

Every test image is made here (deterministic, seeded), then decoded by Pillow as
transformers' load_image does -- ImageOps.exif_transpose(Image.open(f)) -- and the
expected pixels are saved as PNG:
  <name>.rgb.png    .convert("RGB")
  <name>.rgba.png   .convert("RGBA")                       (images with alpha/transparency)
  <name>.white.png  transformers convert_to_rgb(RGBA image)  (images with alpha/transparency)
manifest.json lists each image with its Pillow mode, size after orientation, orientation,
bit depth, channels in the file and the expected files.

PNGs are written by the small encoder below (every bit depth / colour type / Adam7 /
tRNS / eXIf the format allows, which Pillow cannot all write); JPEGs by Pillow.

Run: tools/refgen/.venv/bin/python tools/refgen/gen_images.py
"""
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageOps
from transformers.image_transforms import convert_to_rgb

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "images")

# --------------------------------------------------------------------------------------
# Minimal PNG encoder (all colour types and bit depths, filters 0-4, Adam7)
# --------------------------------------------------------------------------------------

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]  # (x0, y0, dx, dy)


def chunk(cid, data):
    c = cid.encode("ascii")
    return struct.pack(">I", len(data)) + c + data + struct.pack(">I", zlib.crc32(c + data))


def pack_row(samples, bit_depth):
    """samples: 1-D int array (already interleaved channels) -> packed bytes."""
    s = np.asarray(samples, dtype=np.int64)
    if bit_depth == 16:
        return s.astype(">u2").tobytes()
    if bit_depth == 8:
        return s.astype(np.uint8).tobytes()
    per = 8 // bit_depth
    pad = (-len(s)) % per
    s = np.concatenate([s, np.zeros(pad, np.int64)]).reshape(-1, per)
    out = np.zeros(len(s), np.int64)
    for i in range(per):
        out |= s[:, i] << (8 - bit_depth * (i + 1))
    return out.astype(np.uint8).tobytes()


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_row(ftype, row, prev, bpp):
    r = np.frombuffer(row, np.uint8).astype(np.int64)
    p = np.frombuffer(prev, np.uint8).astype(np.int64) if prev is not None else np.zeros_like(r)
    a = np.concatenate([np.zeros(bpp, np.int64), r[:-bpp]]) if len(r) > bpp else np.zeros_like(r)
    c = np.concatenate([np.zeros(bpp, np.int64), p[:-bpp]]) if len(r) > bpp else np.zeros_like(r)
    if len(r) <= bpp:
        a = np.zeros_like(r)
        c = np.zeros_like(r)
    pred = [np.zeros_like(r), a, p, (a + p) // 2, paeth(a, p, c)][ftype]
    return bytes([ftype]) + ((r - pred) & 255).astype(np.uint8).tobytes()


def encode_pass(img, bit_depth, channels, filters):
    h, w = img.shape[:2]
    bpp = max(1, channels * bit_depth // 8)
    out = bytearray()
    prev = None
    for y in range(h):
        row = pack_row(img[y].reshape(-1), bit_depth)
        out += filter_row(filters[y % len(filters)], row, prev, bpp)
        prev = row
    return bytes(out)


def write_png(w, h, color_type, bit_depth, samples, palette=None, trns=None, interlace=False,
              pre=(), post=(), filters=(0, 1, 2, 3, 4), level=9):
    """samples: int array [h, w, channels]. pre/post: extra (cid, data) chunks placed
    before / after IDAT."""
    ch = CHANNELS[color_type]
    img = np.asarray(samples).reshape(h, w, ch)
    raw = bytearray()
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = img[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += encode_pass(sub, bit_depth, ch, filters)
    else:
        raw += encode_pass(img, bit_depth, ch, filters)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk("IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0,
                                     1 if interlace else 0))
    for cid, data in pre:
        out += chunk(cid, data)
    if palette is not None:
        out += chunk("PLTE", palette)
    if trns is not None:
        out += chunk("tRNS", trns)
    comp = zlib.compress(bytes(raw), level)
    # split IDAT into several chunks to exercise chunk boundaries
    step = max(1, len(comp) // 3 + 1)
    for i in range(0, len(comp), step):
        out += chunk("IDAT", comp[i:i + step])
    for cid, data in post:
        out += chunk(cid, data)
    out += chunk("IEND", b"")
    return out


# --------------------------------------------------------------------------------------
# EXIF blobs
# --------------------------------------------------------------------------------------

def exif_tiff(orientation, big_endian=False, extra_tags=True, make_offset=None):
    """A TIFF structure (no "Exif\\0\\0" prefix) with IFD0 holding Orientation.
    make_offset: put the Make value's offset there (past the end: Pillow's IFD read stops
    before Orientation)."""
    e = ">" if big_endian else "<"
    head = (b"MM\x00\x2a" if big_endian else b"II\x2a\x00") + struct.pack(e + "I", 8)
    entries = []
    if extra_tags:
        # Make (ASCII, out-of-line) before Orientation
        entries.append((0x010F, 2, 8, None, b"Tessera\x00"))
    entries.append((0x0112, 3, 1, struct.pack(e + "H", orientation) + b"\x00\x00", None))
    n = len(entries)
    data_off = 8 + 2 + 12 * n + 4
    ifd = struct.pack(e + "H", n)
    blobs = b""
    for tag, typ, count, inline, blob in entries:
        if blob is not None:
            off = data_off + len(blobs) if make_offset is None else make_offset
            ifd += struct.pack(e + "HHII", tag, typ, count, off)
            blobs += blob
        else:
            ifd += struct.pack(e + "HHI", tag, typ, count) + inline
    ifd += struct.pack(e + "I", 0)
    return head + ifd + blobs


def exif_app1(orientation, big_endian=False):
    return b"Exif\x00\x00" + exif_tiff(orientation, big_endian)


# --------------------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------------------

RNG = np.random.default_rng(20240611)


def gradient(w, h, maxv=255, ch=3):
    """Smooth gradient: channel c varies along x, y, or both."""
    x = np.arange(w)[None, :] / max(1, w - 1)
    y = np.arange(h)[:, None] / max(1, h - 1)
    planes = [x + 0 * y, y + 0 * x, (x + y) / 2, 1 - (x * y)]
    arr = np.stack([planes[c % 4] for c in range(ch)], axis=-1)
    return np.rint(arr * maxv).astype(np.int64)


def noise(w, h, maxv=255, ch=3):
    return RNG.integers(0, maxv + 1, size=(h, w, ch), dtype=np.int64)


def strokes(w, h, ch=3):
    """Text-like dark strokes on a light background with a few coloured blobs."""
    im = Image.new("RGB", (w, h), (245, 240, 230))
    d = ImageDraw.Draw(im)
    r = np.random.default_rng(w * 1000 + h)
    for _ in range(max(3, (w * h) // 400)):
        x0, y0 = int(r.integers(0, w)), int(r.integers(0, h))
        x1, y1 = x0 + int(r.integers(-12, 13)), y0 + int(r.integers(-12, 13))
        d.line([(x0, y0), (x1, y1)], fill=(20, 20, 40), width=int(r.integers(1, 3)))
    for _ in range(3):
        x0, y0 = int(r.integers(0, w)), int(r.integers(0, h))
        d.ellipse([x0, y0, x0 + w // 5 + 1, y0 + h // 5 + 1],
                  fill=tuple(int(v) for v in r.integers(0, 256, 3)))
    a = np.asarray(im).astype(np.int64)
    if ch == 1:
        return a[..., :1]
    return a


def edges(w, h, maxv=255, ch=3):
    """Checkerboard with hard edges plus a diagonal."""
    yy, xx = np.mgrid[0:h, 0:w]
    c = (((xx // 4) + (yy // 3)) % 2) * maxv
    c = np.where(xx == yy, maxv // 2, c)
    arr = np.stack([c, maxv - c, (c + xx * 7) % (maxv + 1), c][:ch], axis=-1)
    return arr.astype(np.int64)


def alpha_plane(w, h, maxv=255):
    """Alpha covering the full range incl. exact 0 and max."""
    x = np.arange(w)[None, :] / max(1, w - 1)
    y = np.arange(h)[:, None] / max(1, h - 1)
    a = np.rint(np.clip((x * 1.4 - 0.2) * (0.5 + y / 2), 0, 1) * maxv).astype(np.int64)
    return a[..., None]


# --------------------------------------------------------------------------------------
# Fixture list
# --------------------------------------------------------------------------------------

def png_images():
    """Yields (name, png_bytes)."""
    # gray 1/2/4/8/16
    for bd, (w, h) in [(1, (33, 17)), (2, (31, 9)), (4, (45, 20)), (8, (64, 48)), (16, (40, 30))]:
        m = (1 << bd) - 1
        yield f"png_g{bd}", write_png(w, h, 0, bd, edges(w, h, m, 1) if bd < 8
                                       else gradient(w, h, m, 1))
    # 16-bit gray with values around 255/256: Pillow's I;16 -> L clips, it does not shift
    g = np.array([0, 1, 200, 255, 256, 257, 511, 4096, 65280, 65535])
    yield "png_g16_clip", write_png(10, 3, 0, 16, np.tile(g, 3).reshape(3, 10, 1))
    yield "png_g8_noise", write_png(53, 41, 0, 8, noise(53, 41, 255, 1))
    # gray + alpha
    for bd, (w, h) in [(8, (40, 28)), (16, (29, 31))]:
        m = (1 << bd) - 1
        s = np.concatenate([gradient(w, h, m, 1), alpha_plane(w, h, m)], axis=-1)
        yield f"png_ga{bd}", write_png(w, h, 4, bd, s)
    # palette 1/2/4/8, with and without tRNS
    for bd in (1, 2, 4, 8):
        n = 1 << bd
        w, h = 27 + bd, 19
        pal = bytes(RNG.integers(0, 256, 3 * n, dtype=np.int64).astype(np.uint8))
        idx = (edges(w, h, n - 1, 1) + noise(w, h, n - 1, 1)) % n
        yield f"png_p{bd}", write_png(w, h, 3, bd, idx, palette=pal)
        trns = bytes(RNG.integers(0, 256, max(1, n // 2 + 1), dtype=np.int64).astype(np.uint8))
        yield f"png_p{bd}_trns", write_png(w, h, 3, bd, idx, palette=pal, trns=trns)
    # palette: single fully transparent entry (Pillow keeps an int), short palette
    # (indices past its end), tRNS longer than needed
    pal = bytes(range(0, 48))
    idx = noise(24, 12, 15, 1)
    yield "png_p8_trns1", write_png(24, 12, 3, 8, idx, palette=pal, trns=b"\xff\xff\xff\x00\xff")
    yield "png_p8_short", write_png(24, 12, 3, 8, noise(24, 12, 40, 1), palette=pal)
    yield "png_p4_short_trns", write_png(24, 12, 3, 4, idx, palette=pal[:18], trns=b"\x00\x80")
    # RGB 8/16, RGB + tRNS, RGBA 8/16
    yield "png_rgb8", write_png(64, 48, 2, 8, strokes(64, 48))
    yield "png_rgb8_noise", write_png(37, 23, 2, 8, noise(37, 23))
    yield "png_rgb16", write_png(50, 30, 2, 16, gradient(50, 30, 65535) ^ noise(50, 30, 255))
    s = edges(30, 20)
    yield "png_rgb8_trns", write_png(30, 20, 2, 8, s, trns=struct.pack(">HHH", *s[0, 0]))
    s16 = edges(30, 20, 65535)
    s16[0, :3] = (0x0012, 0x0034, 0x0056)
    s16[1, :3] = (0x1212, 0x3434, 0x5656)
    yield "png_rgb16_trns", write_png(30, 20, 2, 16, s16, trns=struct.pack(">HHH", 0x12, 0x34, 0x56))
    for bd, (w, h) in [(8, (48, 36)), (16, (33, 27))]:
        m = (1 << bd) - 1
        s = np.concatenate([gradient(w, h, m, 3), alpha_plane(w, h, m)], axis=-1)
        yield f"png_rgba{bd}", write_png(w, h, 6, bd, s)
    s = np.concatenate([noise(31, 17), noise(31, 17, 255, 1)], axis=-1)
    yield "png_rgba8_noise", write_png(31, 17, 6, 8, s)
    # gray + tRNS: 1, 2 (Pillow compares the raw tRNS value with scaled L), 8, 16
    yield "png_g1_trns", write_png(20, 8, 0, 1, edges(20, 8, 1, 1), trns=b"\x00\x01")
    yield "png_g2_trns", write_png(20, 8, 0, 2, edges(20, 8, 3, 1), trns=b"\x00\x03")
    yield "png_g2_trns_hit", write_png(20, 8, 0, 2, noise(20, 8, 3, 1), trns=b"\x00\x55")
    gg = gradient(32, 16, 255, 1)
    yield "png_g8_trns", write_png(32, 16, 0, 8, gg, trns=struct.pack(">H", int(gg[3, 5, 0])))
    yield "png_g16_trns", write_png(10, 3, 0, 16, np.tile(g, 3).reshape(3, 10, 1),
                                    trns=struct.pack(">H", 0x0100 + 200))
    # Adam7
    yield "png_rgb8_adam7", write_png(37, 29, 2, 8, strokes(37, 29), interlace=True)
    yield "png_g1_adam7", write_png(21, 13, 0, 1, edges(21, 13, 1, 1), interlace=True)
    yield "png_p4_adam7", write_png(19, 11, 3, 4, noise(19, 11, 15, 1),
                                    palette=bytes(range(48)), trns=b"\x10\x20", interlace=True)
    yield "png_rgba16_adam7", write_png(23, 17, 6, 16,
                                        np.concatenate([noise(23, 17, 65535),
                                                        alpha_plane(23, 17, 65535)], -1),
                                        interlace=True)
    yield "png_ga8_adam7", write_png(9, 10, 4, 8, noise(9, 10, 255, 2), interlace=True)
    yield "png_rgb8_1x1_adam7", write_png(1, 1, 2, 8, np.array([[[200, 100, 50]]]), interlace=True)
    yield "png_g8_3x3_adam7", write_png(3, 3, 0, 8, noise(3, 3, 255, 1), interlace=True)
    # sizes and aspect ratios
    yield "png_rgb8_1x1", write_png(1, 1, 2, 8, np.array([[[1, 2, 3]]]))
    yield "png_g8_1x1000", write_png(1, 1000, 0, 8, gradient(1, 1000, 255, 1))
    yield "png_rgb8_3000x2", write_png(3000, 2, 2, 8, gradient(3000, 2))
    yield "png_rgb8_1000x1", write_png(1000, 1, 2, 8, noise(1000, 1))
    yield "png_rgb8_1900x1200", write_png(1900, 1200, 2, 8, gradient(1900, 1200), filters=(1,))
    # ancillary chunks Pillow ignores for pixels (gamma is not applied)
    yield "png_rgb8_gama", write_png(16, 16, 2, 8, edges(16, 16),
                                     pre=[("gAMA", struct.pack(">I", 45455)), ("sRGB", b"\x00"),
                                          ("tEXt", b"Comment\x00hello"),
                                          ("pHYs", struct.pack(">IIB", 2835, 2835, 1))])
    # EXIF: eXIf before IDAT (II and MM), after IDAT, ImageMagick raw profile, XMP
    yield "png_exif6", write_png(40, 24, 2, 8, strokes(40, 24),
                                 pre=[("eXIf", exif_tiff(6))])
    yield "png_exif3_mm", write_png(30, 20, 0, 8, gradient(30, 20, 255, 1),
                                    pre=[("eXIf", exif_tiff(3, big_endian=True))])
    yield "png_exif8_after_idat", write_png(26, 14, 6, 8,
                                            np.concatenate([strokes(26, 14), alpha_plane(26, 14)],
                                                           -1),
                                            post=[("eXIf", exif_tiff(8))])
    raw = exif_app1(5)
    hexs = raw.hex()
    prof = "\nexif\n%8d\n" % len(raw) + "\n".join(hexs[i:i + 72] for i in range(0, len(hexs), 72)) + "\n"
    yield "png_exif5_rawprofile", write_png(
        22, 12, 2, 8, strokes(22, 12),
        pre=[("zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(prof.encode("latin-1")))])
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
           b'tiff:Orientation="7"/></rdf:RDF></x:xmpmeta>')
    yield "png_exif7_xmp", write_png(18, 10, 2, 8, strokes(18, 10),
                                     pre=[("iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp)])
    # orientation tag out of range: no transpose
    yield "png_exif9", write_png(12, 8, 2, 8, edges(12, 8), pre=[("eXIf", exif_tiff(9))])


def jpeg_bytes(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", **kw)
    return b.getvalue()


def rgb_image(arr):
    return Image.fromarray(np.asarray(arr, dtype=np.uint8), "RGB")


def jpeg_images():
    base = rgb_image(strokes(64, 48))
    odd = rgb_image(np.clip(gradient(37, 23) + noise(37, 23, 40) - 20, 0, 255))
    for name, sub in [("444", 0), ("422", 1), ("420", 2)]:
        yield f"jpg_{name}", jpeg_bytes(base, quality=90, subsampling=sub)
        yield f"jpg_{name}_odd", jpeg_bytes(odd, quality=75, subsampling=sub)
    yield "jpg_420_q30_noise", jpeg_bytes(rgb_image(noise(40, 40)), quality=30, subsampling=2)
    yield "jpg_420_optimize", jpeg_bytes(base, quality=85, optimize=True)
    yield "jpg_prog_420", jpeg_bytes(base, quality=85, progressive=True, subsampling=2)
    yield "jpg_prog_444_odd", jpeg_bytes(odd, quality=92, progressive=True, subsampling=0)
    yield "jpg_prog_noise", jpeg_bytes(rgb_image(noise(45, 33)), quality=60, progressive=True)
    gray = Image.fromarray(strokes(50, 30, 1)[..., 0].astype(np.uint8), "L")
    yield "jpg_gray", jpeg_bytes(gray, quality=90)
    yield "jpg_gray_prog", jpeg_bytes(gray, quality=80, progressive=True)
    cmyk = Image.fromarray(np.concatenate([noise(24, 16, 255), gradient(24, 16, 255, 1)], -1)
                           .astype(np.uint8), "CMYK")
    yield "jpg_cmyk", jpeg_bytes(cmyk, quality=90)
    yield "jpg_cmyk_prog", jpeg_bytes(cmyk, quality=90, progressive=True)
    # YCCK (Adobe transform 2) written by ImageMagick when available
    ycck = ycck_jpeg(cmyk)
    if ycck is not None:
        yield "jpg_ycck", ycck
    # sizes
    yield "jpg_1x1", jpeg_bytes(rgb_image([[[10, 200, 30]]]), quality=95)
    yield "jpg_1x1000", jpeg_bytes(rgb_image(gradient(1, 1000)), quality=90)
    yield "jpg_3000x2", jpeg_bytes(rgb_image(gradient(3000, 2)), quality=90)
    yield "jpg_2000x1500", jpeg_bytes(rgb_image(gradient(2000, 1500)), quality=80)
    yield "jpg_17x9_prog_422", jpeg_bytes(rgb_image(noise(17, 9)), quality=70, progressive=True,
                                          subsampling=1)
    # EXIF orientation 1..8 on a non-square 4:2:0 image, alternating byte order
    ex = rgb_image(strokes(36, 20))
    for o in range(1, 9):
        yield f"jpg_exif{o}", jpeg_bytes(ex, quality=90, exif=exif_app1(o, big_endian=o % 2 == 0))
    yield "jpg_exif6_gray", jpeg_bytes(gray, quality=90, exif=exif_app1(6))
    yield "jpg_exif5_prog", jpeg_bytes(odd, quality=90, progressive=True, exif=exif_app1(5))
    # EXIF that is not TIFF: Pillow's _open swallows it (no JFIF dpi), orientation 1
    yield "jpg_exif_nottiff", jpeg_bytes(ex, quality=90, exif=b"Exif\x00\x00XX*\x00" +
                                         exif_tiff(6)[4:])
    yield "jpg_exif6_badoffset", jpeg_bytes(ex, quality=90, exif=b"Exif\x00\x00" +
                                            exif_tiff(6, make_offset=0x1000))


def ycck_jpeg(cmyk):
    """ImageMagick 6 writes Adobe YCCK for CMYK input when asked via jpeg:colorspace."""
    try:
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "in.tif")
            dst = os.path.join(d, "out.jpg")
            cmyk.save(src)
            subprocess.run(["convert", src, "-define", "jpeg:colorspace=5", "-quality", "90", dst],
                           check=True, capture_output=True)
            data = open(dst, "rb").read()
    except (OSError, subprocess.CalledProcessError):
        return None
    i = data.find(b"Adobe")
    if i < 0 or data[i + 11] != 2:
        return None
    return data


# --------------------------------------------------------------------------------------
# Reference decode
# --------------------------------------------------------------------------------------

def reference(data):
    """Pillow as transformers' load_image: exif_transpose then convert."""
    im = Image.open(io.BytesIO(data))
    mode = im.mode
    im.load()
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in range(1, 9):
        orientation = 1
    t = ImageOps.exif_transpose(im)
    has_alpha = "A" in t.getbands() or t.info.get("transparency") is not None
    rgb = t.convert("RGB")
    rgba = t.convert("RGBA") if has_alpha else None
    white = convert_to_rgb(rgba, return_numpy=True) if has_alpha else None
    return im, mode, orientation, t.size, has_alpha, rgb, rgba, white


def file_facts(fmt, data, im):
    if fmt == "png":
        bd, ct = data[24], data[25]
        return bd, CHANNELS[ct]
    return 8, len(im.getbands())


def save_png(arr_or_im, path):
    # through numpy so no info (transparency, exif) is carried into the expected file
    Image.fromarray(np.asarray(arr_or_im)).save(path, "PNG", compress_level=9)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    items = []
    for fmt, gen in (("png", png_images()), ("jpeg", jpeg_images())):
        for name, data in gen:
            ext = "png" if fmt == "png" else "jpg"
            fname = f"{name}.{ext}"
            with open(os.path.join(OUT, fname), "wb") as fh:
                fh.write(data)
            im, mode, orientation, size, has_alpha, rgb, rgba, white = reference(data)
            bd, ch = file_facts(fmt, data, im)
            entry = {"name": name, "file": fname, "format": fmt, "pil_mode": mode,
                     "width": size[0], "height": size[1], "orientation": orientation,
                     "bit_depth": bd, "channels": ch, "has_alpha": bool(has_alpha),
                     "rgb": f"{name}.rgb.png"}
            save_png(rgb, os.path.join(OUT, entry["rgb"]))
            if has_alpha:
                entry["rgba"] = f"{name}.rgba.png"
                entry["white"] = f"{name}.white.png"
                save_png(rgba, os.path.join(OUT, entry["rgba"]))
                save_png(white, os.path.join(OUT, entry["white"]))
            items.append(entry)
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump({"generator": "tools/refgen/gen_images.py",
                   "pillow": Image.__version__, "images": items}, fh, indent=1)
        fh.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(items)} images, {total / 1048576:.2f} MiB in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
