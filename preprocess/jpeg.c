/*
 * jpeg.c - JPEG decoding equal to Pillow's JpegImagePlugin + convert("RGB"/"RGBA").
 *
 * Pillow decodes with the libjpeg API and its defaults (ISLOW IDCT, fancy upsampling,
 * block smoothing), which this file uses too (libjpeg62-turbo). The TurboJPEG API is not
 * used because it cannot express two things Pillow does:
 *  - truncation: Pillow's source suspends at the end of the data and the file fails when
 *    libjpeg wants bytes past the end before the last scanline is out; TurboJPEG's memory
 *    source turns that into a warning indistinguishable from others (and its 2.1 header
 *    call also rejects sampling factors libjpeg decodes).
 *  - ignoring corrupt-data warnings otherwise (Pillow's output_message is a no-op).
 * Before libjpeg runs, a marker walk mirrors Pillow's _open: it rejects what Pillow
 * rejects (non-8-bit samples, 2-component images, bad DQT, stray markers) and collects the
 * EXIF (APP1 "Exif", later segments appended) and XMP orientation.
 * Every setjmp stays inside tsr__jpeg_decode.
 */
#include "image_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct jpg_scan {
    uint32_t width, height;
    int bits, components;
    int32_t orientation;
    int32_t exif_invalid;
} jpg_scan;

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

#define FAIL_JPG(...) tsr__fail(err, TSR_ERR_FORMAT, __VA_ARGS__)

/* Marker walk as JpegImageFile._open, up to SOS. */
static tsr_status jpg_walk(const uint8_t *buf, size_t len, jpg_scan *s, tsr_error *err) {
    memset(s, 0, sizeof *s);
    const uint8_t *exif = NULL; /* first APP1 Exif segment, later ones appended (Pillow) */
    size_t exif_len = 0;
    uint8_t *exif_joined = NULL;
    int xmp_orient = -1, have_sof = 0, have_sos = 0, jfif_dpi = 0;
    tsr_status st = TSR_OK;
    size_t p = 2;
    while (p < len) {
        if (buf[p] != 0xff) { p++; continue; } /* junk between markers */
        if (p + 1 >= len) break;
        uint8_t m = buf[p + 1];
        if (m == 0xff) { p++; continue; }     /* fill byte */
        if (m == 0x00) { p += 2; continue; }  /* escaped 0xFF */
        if (m < 0xc0) {
            st = FAIL_JPG("no marker found at offset %zu (0xff%02x)", p, m);
            goto done;
        }
        p += 2;
        /* markers without a segment: JPG, SOI, EOI, RSTn, JPGn */
        if (m == 0xc8 || (m >= 0xd0 && m <= 0xd9) || (m >= 0xf0 && m <= 0xfd)) continue;
        if (len - p < 2) {
            st = FAIL_JPG("truncated marker 0xff%02x at offset %zu", m, p - 2);
            goto done;
        }
        long n = (long)be16(buf + p) - 2;
        p += 2;
        if (n < 0) n = 0;
        if ((size_t)n > len - p) {
            st = FAIL_JPG("truncated segment 0xff%02x: %ld bytes at offset %zu, %zu left", m, n,
                          p, len - p);
            goto done;
        }
        const uint8_t *d = buf + p;
        size_t dn = (size_t)n;
        p += dn;
        if ((m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc) || m == 0xde) {
            if (dn < 6 || (dn - 6) % 3 != 0) {
                st = FAIL_JPG("bad SOF segment length %zu", dn);
                goto done;
            }
            s->bits = d[0];
            s->height = be16(d + 1);
            s->width = be16(d + 3);
            s->components = d[5];
            have_sof = 1;
            if (s->bits != 8) {
                st = tsr__fail(err, TSR_ERR_UNSUPPORTED, "%d-bit JPEG samples (only 8-bit)",
                              s->bits);
                goto done;
            }
            if (s->components != 1 && s->components != 3 && s->components != 4) {
                st = tsr__fail(err, TSR_ERR_UNSUPPORTED, "%d-component JPEG (1, 3 or 4)",
                              s->components);
                goto done;
            }
        } else if (m == 0xdb) { /* DQT: every table complete */
            size_t q = 0;
            while (q < dn) {
                size_t tl = 1 + (d[q] >> 4 ? 128 : 64);
                if (dn - q < tl) {
                    st = FAIL_JPG("bad quantization table marker");
                    goto done;
                }
                q += tl;
            }
        } else if (m == 0xe0 && dn >= 4 && memcmp(d, "JFIF", 4) == 0) {
            if (dn < 7) {
                st = FAIL_JPG("truncated JFIF segment");
                goto done;
            }
            if (dn >= 12 && (d[7] == 1 || d[7] == 2)) jfif_dpi = 1; /* Pillow info["dpi"] */
        } else if (m == 0xee && dn >= 5 && memcmp(d, "Adobe", 5) == 0 && dn < 7) {
            st = FAIL_JPG("truncated Adobe segment");
            goto done;
        } else if (m == 0xe1 && dn >= 6 && memcmp(d, "Exif\0\0", 6) == 0) {
            if (!exif) {
                exif = d;
                exif_len = dn;
            } else {
                uint8_t *j = tsr__malloc(exif_len + dn - 6);
                if (!j) {
                    st = tsr__fail(err, TSR_ERR_OOM, "cannot join EXIF segments");
                    goto done;
                }
                memcpy(j, exif, exif_len);
                memcpy(j + exif_len, d + 6, dn - 6);
                tsr__free(exif_joined);
                exif = exif_joined = j;
                exif_len += dn - 6;
            }
        } else if (m == 0xe1 && dn >= 29 && memcmp(d, "http://ns.adobe.com/xap/1.0/\0", 29) == 0) {
            xmp_orient = tsr__xmp_orientation(d + 29, dn - 29);
        } else if (m == 0xda) {
            have_sos = 1;
            break;
        }
    }
    if (!have_sof) {
        st = FAIL_JPG("no SOF marker before %s", have_sos ? "SOS" : "the end of the data");
        goto done;
    }
    if (s->width == 0 || s->height == 0) {
        st = FAIL_JPG("image size %u x %u in SOF", s->width, s->height);
        goto done;
    }
    /* Pillow's _open reads the EXIF for dpi unless JFIF gave one; a bad block then leaves
     * an empty, cached EXIF (no orientation, no XMP look-up). With JFIF dpi the bad block
     * is first parsed by exif_transpose, which raises. */
    int64_t o = exif ? tsr__exif_orientation(exif, exif_len) : TSR__ORIENT_ABSENT;
    if (o == TSR__ORIENT_INVALID) {
        s->exif_invalid = jfif_dpi;
        o = 1;
    }
    if (o == TSR__ORIENT_ABSENT) o = xmp_orient;
    s->orientation = (o >= 1 && o <= 8) ? (int32_t)o : 1;
done:
    tsr__free(exif_joined);
    return st;
}

static void fill_header(const jpg_scan *s, tsr__image_header *h) {
    memset(h, 0, sizeof *h);
    h->format = TSR_IMAGE_FORMAT_JPEG;
    h->width = (int32_t)s->width;
    h->height = (int32_t)s->height;
    h->bit_depth = s->bits;
    h->channels = s->components;
    h->has_alpha = 0;
    h->orientation = s->orientation;
    h->exif_invalid = s->exif_invalid;
    snprintf(h->mode, sizeof h->mode, "%s",
             s->components == 1 ? "L" : s->components == 3 ? "RGB" : "CMYK");
}

tsr_status tsr__jpeg_probe(const uint8_t *buf, size_t len,
                           const tsr_image_decode_params *params, tsr__image_header *hdr,
                           tsr_error *err) {
    jpg_scan s;
    tsr_status st = jpg_walk(buf, len, &s, err);
    if (st != TSR_OK) return st;
    fill_header(&s, hdr);
    return tsr__image_check_header(hdr, params, err);
}

/* ------------------------------------------------------------------------------------ */
/* libjpeg                                                                                */
/* ------------------------------------------------------------------------------------ */

typedef struct jpg_ctx {
    struct jpeg_error_mgr pub; /* first: libjpeg casts cinfo->err to this */
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
    struct jpeg_source_mgr src;
    int hit_end;     /* libjpeg wanted bytes past the end of the data */
    uint8_t *row;    /* one decoded scanline */
} jpg_ctx;

static const JOCTET k_fake_eoi[2] = {0xff, JPEG_EOI};

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }

/* Where Pillow's suspending source would stop and fail the file, note it and feed an EOI
 * so libjpeg unwinds without suspending. */
static boolean src_fill(j_decompress_ptr cinfo) {
    jpg_ctx *c = (jpg_ctx *)cinfo->err;
    c->hit_end = 1;
    cinfo->src->next_input_byte = k_fake_eoi;
    cinfo->src->bytes_in_buffer = 2;
    return TRUE;
}

static void src_skip(j_decompress_ptr cinfo, long n) {
    struct jpeg_source_mgr *src = cinfo->src;
    if (n <= 0) return;
    if ((size_t)n > src->bytes_in_buffer) {
        ((jpg_ctx *)cinfo->err)->hit_end = 1;
        src->next_input_byte += src->bytes_in_buffer;
        src->bytes_in_buffer = 0;
        return;
    }
    src->next_input_byte += n;
    src->bytes_in_buffer -= (size_t)n;
}

static void err_exit(j_common_ptr cinfo) {
    jpg_ctx *c = (jpg_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jmp, 1);
}

static void err_output(j_common_ptr cinfo) { (void)cinfo; /* warnings are ignored */ }

static void convert_row(const uint8_t *in, uint8_t *o, JDIMENSION w, int comps, int channels) {
    for (JDIMENSION x = 0; x < w; x++, o += channels) {
        if (comps == 1) {
            o[0] = o[1] = o[2] = in[x];
        } else if (comps == 3) {
            memcpy(o, in + 3 * (size_t)x, 3);
        } else { /* "CMYK;I": Adobe-inverted, then Pillow's cmyk2rgb */
            const uint8_t *q = in + 4 * (size_t)x;
            uint8_t k = (uint8_t)(255 - q[3]);
            for (int i = 0; i < 3; i++) o[i] = tsr__cmyk_channel((uint8_t)(255 - q[i]), k);
        }
        if (channels == 4) o[3] = 255;
    }
}

tsr_status tsr__jpeg_decode(const uint8_t *buf, size_t len,
                            const tsr_image_decode_params *params, tsr__image_header *hdr,
                            tsr_image *out, tsr_error *err) {
    const int32_t channels = params->channels;
    jpg_scan s;
    tsr_status st = jpg_walk(buf, len, &s, err);
    if (st != TSR_OK) return st;
    fill_header(&s, hdr);
    st = tsr__image_check_header(hdr, params, err);
    if (st != TSR_OK) return st;

    struct jpeg_decompress_struct cinfo;
    jpg_ctx c;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&c, 0, sizeof c);
    memset(out, 0, sizeof *out);
    cinfo.err = jpeg_std_error(&c.pub);
    c.pub.error_exit = err_exit;
    c.pub.output_message = err_output;
    if (setjmp(c.jmp)) {
        int code = c.pub.msg_code;
        jpeg_destroy_decompress(&cinfo);
        tsr__free(c.row);
        tsr_image_free(out);
        if (code == JERR_OUT_OF_MEMORY)
            return tsr__fail(err, TSR_ERR_OOM, "libjpeg: %s", c.msg);
        if (code == JERR_ARITH_NOTIMPL || code == JERR_NOT_COMPILED ||
            code == JERR_BAD_PRECISION)
            return tsr__fail(err, TSR_ERR_UNSUPPORTED, "libjpeg: %s", c.msg);
        return FAIL_JPG("libjpeg: %s", c.msg);
    }
    jpeg_create_decompress(&cinfo);
    c.src.init_source = src_init;
    c.src.fill_input_buffer = src_fill;
    c.src.skip_input_data = src_skip;
    c.src.resync_to_restart = jpeg_resync_to_restart;
    c.src.term_source = src_term;
    c.src.next_input_byte = buf;
    c.src.bytes_in_buffer = len;
    cinfo.src = &c.src;

    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.image_width != s.width || cinfo.image_height != s.height ||
        cinfo.num_components != s.components)
        ERREXIT(&cinfo, JERR_SOF_DUPLICATE); /* libjpeg saw a different frame header */
    /* Color images decode straight into the output rows (libjpeg-turbo writes RGBA with
     * alpha 255 itself); gray and CMYK go through a row buffer and convert_row. */
    const bool direct = s.components == 3;
    cinfo.out_color_space = s.components == 1 ? JCS_GRAYSCALE
                          : s.components == 3 ? (channels == 4 ? JCS_EXT_RGBA : JCS_RGB)
                                              : JCS_CMYK;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != (direct ? channels : s.components))
        ERREXIT(&cinfo, JERR_CONVERSION_NOTIMPL);
    if (tsr_image_alloc(out, (int32_t)s.width, (int32_t)s.height, channels, err) != TSR_OK ||
        !(c.row = tsr__malloc((size_t)s.width * (size_t)s.components))) {
        jpeg_destroy_decompress(&cinfo);
        tsr__free(c.row);
        tsr_image_free(out);
        return tsr__fail(err, TSR_ERR_OOM, "cannot allocate a %u x %u image", s.width, s.height);
    }
    const size_t stride = (size_t)s.width * (size_t)channels;
    while (cinfo.output_scanline < cinfo.output_height && !c.hit_end) {
        JDIMENSION y = cinfo.output_scanline;
        JSAMPROW row = direct ? out->data + (size_t)y * stride : c.row;
        if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) break;
        if (!direct)
            convert_row(c.row, out->data + (size_t)y * stride, s.width, s.components, channels);
    }
    if (c.hit_end) {
        size_t y = cinfo.output_scanline;
        jpeg_destroy_decompress(&cinfo);
        tsr__free(c.row);
        tsr_image_free(out);
        return FAIL_JPG("image file is truncated (data ends before scanline %zu of %u)", y,
                        s.height);
    }
    jpeg_finish_decompress(&cinfo); /* a missing EOI after the last scanline is fine */
    jpeg_destroy_decompress(&cinfo);
    tsr__free(c.row);
    return TSR_OK;
}
