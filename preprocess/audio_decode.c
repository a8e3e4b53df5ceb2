/*
 * audio_decode.c - encoded audio in memory -> mono float32 at a target rate, as
 * librosa.load(path, sr=...) produces it:
 *   1. libsndfile decode, sf_readf_float with the default normalisation (what
 *      python-soundfile's read(dtype="float32") calls);
 *   2. channel mean in float32 in numpy's summation order (np.mean over channels);
 *   3. librosa.resample(res_type="soxr_hq") = python-soxr's soxr.resample: libsoxr HQ,
 *      float32 split-channel I/O, input fed in blocks, then flushed;
 *   4. librosa.util.fix_length to ceil(n_in * sr_out / sr_in) samples.
 * Limits are checked from the sndfile header before any sample buffer is allocated, and
 * again while decoding, since a header may lie about its length.
 */
#include <math.h>
#include <pthread.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdio.h>
#include <string.h>

#include "tessera_internal.h"

/* Sample rates accepted in files and as targets: anything outside is not speech audio and
 * would make libsoxr build absurd filters. */
#define MIN_RATE 1000
#define MAX_RATE 768000
/* Frames decoded per sf_readf_float call (interleaved scratch of this many frames). */
#define READ_BLOCK 16384
/* First capacity of the mono buffer when the header's frame count is not trusted. */
#define FIRST_CAPACITY (1 << 20)
/* libsndfile >= 1.1 values (sndfile.h defines them as enum constants only, so older headers
 * cannot be detected with #ifdef); whether MP3 works is asked at run time. */
#define FORMAT_MPEG 0x230000
#define FORMAT_MPEG_LAYER_I 0x0080
#define FORMAT_MPEG_LAYER_II 0x0081
#define FORMAT_MPEG_LAYER_III 0x0082

/* Failures inside the helpers still name the public entry point. */
#define DECODE_FAIL(err, status, ...) \
    tsr__fail_fn((err), (status), "tsr_audio_decode", __VA_ARGS__)

tsr_audio_decode_params tsr_audio_decode_params_default(void) {
    tsr_audio_decode_params p;
    memset(&p, 0, sizeof p);
    p.size = sizeof p;
    p.sample_rate = 16000;
    p.limits = tsr_limits_default();
    return p;
}

void tsr_audio_free(tsr_audio *audio) {
    if (!audio) return;
    tsr__free(audio->samples);
    memset(audio, 0, sizeof *audio);
}

/* ---------------------------------------------------------------------------------- */
/* libsndfile virtual I/O over a borrowed buffer                                        */

typedef struct mem_reader {
    const uint8_t *buf;
    sf_count_t len;
    sf_count_t pos;
} mem_reader;

static sf_count_t vio_len(void *user) { return ((mem_reader *)user)->len; }

static sf_count_t vio_seek(sf_count_t offset, int whence, void *user) {
    mem_reader *m = user;
    sf_count_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
    if ((offset > 0 && base > INT64_MAX - offset) || base + offset < 0) return -1;
    sf_count_t p = base + offset;
    m->pos = p > m->len ? m->len : p;
    return m->pos;
}

static sf_count_t vio_read(void *dst, sf_count_t count, void *user) {
    mem_reader *m = user;
    if (count <= 0 || m->pos >= m->len) return 0;
    sf_count_t n = m->len - m->pos < count ? m->len - m->pos : count;
    memcpy(dst, m->buf + m->pos, (size_t)n);
    m->pos += n;
    return n;
}

static sf_count_t vio_write(const void *src, sf_count_t count, void *user) {
    (void)src, (void)count, (void)user;
    return 0;
}

static sf_count_t vio_tell(void *user) { return ((mem_reader *)user)->pos; }

/* ---------------------------------------------------------------------------------- */
/* Formats                                                                               */

static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_mp3_supported;
static pthread_once_t g_mp3_once = PTHREAD_ONCE_INIT;

/* libsndfile >= 1.1 lists MPEG among its major formats when built with mpg123. */
static void probe_mp3_support(void) {
    int count = 0;
    sf_command(NULL, SFC_GET_FORMAT_MAJOR_COUNT, &count, sizeof count);
    for (int i = 0; i < count; i++) {
        SF_FORMAT_INFO fi;
        memset(&fi, 0, sizeof fi);
        fi.format = i;
        if (sf_command(NULL, SFC_GET_FORMAT_MAJOR, &fi, sizeof fi) == 0 &&
            (fi.format & SF_FORMAT_TYPEMASK) == FORMAT_MPEG)
            g_mp3_supported = 1;
    }
}

static bool mp3_supported(void) {
    pthread_once(&g_mp3_once, probe_mp3_support);
    return g_mp3_supported != 0;
}

/* Same test as tsr_media_sniff's for MPEG audio. */
static bool looks_like_mp3(const uint8_t *buf, size_t len) {
    if (len >= 3 && !memcmp(buf, "ID3", 3)) return true;
    return len >= 2 && buf[0] == 0xff && (buf[1] & 0xe0) == 0xe0 && (buf[1] & 0x06) != 0;
}

/* Short name for tsr_audio_info.format; NULL for containers we do not accept. */
static const char *container_name(int format) {
    switch (format & SF_FORMAT_TYPEMASK) {
    case SF_FORMAT_WAV:
    case SF_FORMAT_WAVEX:
    case SF_FORMAT_RF64: return "wav";
    case SF_FORMAT_W64: return "w64";
    case SF_FORMAT_AIFF: return "aiff";
    case SF_FORMAT_AU: return "au";
    case SF_FORMAT_CAF: return "caf";
    case SF_FORMAT_FLAC: return "flac";
    case SF_FORMAT_OGG: return "ogg";
    case FORMAT_MPEG: return "mp3";
    default: return NULL;
    }
}

/* Sample encodings we decode. Exotic codecs (ADPCM variants, GSM, G.72x, DWVW, ...) are
 * refused after the header is read, which keeps their decoders away from untrusted data. */
static bool subtype_accepted(int format) {
    switch (format & SF_FORMAT_SUBMASK) {
    case SF_FORMAT_PCM_S8:
    case SF_FORMAT_PCM_U8:
    case SF_FORMAT_PCM_16:
    case SF_FORMAT_PCM_24:
    case SF_FORMAT_PCM_32:
    case SF_FORMAT_FLOAT:
    case SF_FORMAT_DOUBLE:
    case SF_FORMAT_ULAW:
    case SF_FORMAT_ALAW:
    case SF_FORMAT_VORBIS:
    case SF_FORMAT_OPUS:
    case FORMAT_MPEG_LAYER_I:
    case FORMAT_MPEG_LAYER_II:
    case FORMAT_MPEG_LAYER_III:
        return true;
    default: return false;
    }
}

static const char *subtype_name(int format, char *buf, size_t n) {
    SF_FORMAT_INFO fi;
    memset(&fi, 0, sizeof fi);
    fi.format = format & SF_FORMAT_SUBMASK;
    if (sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof fi) == 0 && fi.name)
        snprintf(buf, n, "%s", fi.name);
    else
        snprintf(buf, n, "0x%04x", (unsigned)(format & SF_FORMAT_SUBMASK));
    return buf;
}

/* ---------------------------------------------------------------------------------- */
/* Ogg Vorbis header pre-check                                                           */
/*
 * libsndfile 1.2's vorbis_read_header() returns early, without vorbis_info_clear(), when
 * the Vorbis headers are incomplete or malformed, leaking libvorbis' codec setup (~6 KiB per
 * bad file). We therefore walk the pages the way libogg would (resync on junk or a bad CRC,
 * stop at a truncated page) and pass a Vorbis stream to libsndfile only when its three header
 * packets are all there: one identification packet alone on the first page, that libvorbis
 * accepts, then two more complete packets on consecutive pages of the same stream.
 */

typedef struct ogg_view {
    uint8_t version, flags;
    uint32_t serial, seqno;
    int nsegs;
    const uint8_t *lacing; /* nsegs lacing values */
    const uint8_t *body;
    size_t body_len;
} ogg_view;

enum { OGG_CONTINUED = 1, OGG_BOS = 2, OGG_EOS = 4 };

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Next page at or after *pos, as libogg's ogg_sync_pageseek finds it: false at the end of
 * the buffer or at a page that runs past it. */
static bool ogg_next_page(const uint8_t *buf, size_t len, const uint32_t crc_table[256],
                          size_t *pos, ogg_view *pg) {
    while (*pos < len) {
        const size_t p = *pos;
        const size_t avail = len - p;
        if (avail >= 4 && !memcmp(buf + p, "OggS", 4)) {
            if (avail < 27 || avail < 27u + buf[p + 26]) return false;
            const size_t header = 27u + buf[p + 26];
            size_t body = 0;
            for (size_t i = 27; i < header; i++) body += buf[p + i];
            if (avail - header < body) return false;
            uint32_t crc = 0;
            for (size_t i = 0; i < header + body; i++) {
                uint8_t b = (i >= 22 && i < 26) ? 0 : buf[p + i];
                crc = (crc << 8) ^ crc_table[((crc >> 24) ^ b) & 0xff];
            }
            if (crc == le32(buf + p + 22)) {
                pg->version = buf[p + 4];
                pg->flags = buf[p + 5];
                pg->serial = le32(buf + p + 14);
                pg->seqno = le32(buf + p + 18);
                pg->nsegs = buf[p + 26];
                pg->lacing = buf + p + 27;
                pg->body = buf + p + header;
                pg->body_len = body;
                *pos = p + header + body;
                return true;
            }
        } else if (avail < 4 && !memcmp(buf + p, "OggS", avail)) {
            return false; /* a page may start here but is cut */
        }
        /* Resync: skip to the next 'O' after this position. */
        const uint8_t *next = avail > 1 ? memchr(buf + p + 1, 'O', avail - 1) : NULL;
        *pos = next ? (size_t)(next - buf) : len;
    }
    return false;
}

/* What libvorbis' _vorbis_unpack_info() requires of the identification packet. */
static bool vorbis_ident_ok(const uint8_t *p, size_t n) {
    if (n < 30 || memcmp(p, "\x01vorbis", 7) || le32(p + 7) != 0) return false;
    const int e0 = p[28] & 0x0f, e1 = p[28] >> 4;
    return p[11] >= 1 && le32(p + 12) >= 1 && e0 >= 6 && e1 >= e0 && e1 <= 13 && (p[29] & 1);
}

static tsr_status check_ogg_vorbis(const char *fn, const uint8_t *buf, size_t len,
                                   tsr_error *err) {
    uint32_t table[256];
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t r = i << 24;
        for (int k = 0; k < 8; k++) r = (r & 0x80000000u) ? (r << 1) ^ 0x04c11db7u : r << 1;
        table[i] = r;
    }
    size_t pos = 0;
    ogg_view pg;
    /* Not a Vorbis first page: libsndfile fails or succeeds without reaching the leak. */
    if (!ogg_next_page(buf, len, table, &pos, &pg) || !(pg.flags & OGG_BOS) ||
        pg.body_len < 7 || memcmp(pg.body, "\x01vorbis", 7))
        return TSR_OK;
#define BAD_HEADERS(why)                                                                  \
    tsr__fail_fn(err, TSR_ERR_FORMAT, fn, "Ogg Vorbis headers are incomplete or malformed (%s)", \
                 why)
    if (pg.version != 0 || (pg.flags & OGG_CONTINUED)) return BAD_HEADERS("first page");
    int k = 0;
    size_t ident_len = 0;
    while (k < pg.nsegs && pg.lacing[k] == 255) ident_len += pg.lacing[k++];
    if (k == pg.nsegs) return BAD_HEADERS("identification packet not on the first page");
    ident_len += pg.lacing[k++];
    for (int i = k; i < pg.nsegs; i++)
        if (pg.lacing[i] < 255) return BAD_HEADERS("extra packets on the first page");
    if (!vorbis_ident_ok(pg.body, ident_len)) return BAD_HEADERS("identification packet");

    bool pending = k < pg.nsegs, eos = false;
    const uint32_t serial = pg.serial;
    uint64_t expect_seq = (uint64_t)pg.seqno + 1;
    int have = 0;
    while (have < 2) {
        if (eos) return BAD_HEADERS("stream ends inside the headers");
        if (!ogg_next_page(buf, len, table, &pos, &pg))
            return BAD_HEADERS("data ends inside the headers");
        if (pg.serial != serial) continue;
        if (pg.version != 0) return BAD_HEADERS("page version");
        if ((uint64_t)pg.seqno != expect_seq) return BAD_HEADERS("missing page");
        if (((pg.flags & OGG_CONTINUED) != 0) != pending) return BAD_HEADERS("continuation");
        expect_seq = (uint64_t)pg.seqno + 1;
        for (int i = 0; i < pg.nsegs; i++) {
            pending = pg.lacing[i] == 255;
            if (!pending) have++;
        }
        eos = (pg.flags & OGG_EOS) != 0;
    }
#undef BAD_HEADERS
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Opening and header checks                                                             */

typedef struct opened {
    mem_reader mem;
    SF_VIRTUAL_IO vio;
    SNDFILE *sf;
    SF_INFO info;
    int64_t max_frames; /* from max_audio_seconds; INT64_MAX when unlimited */
    bool unknown_length; /* libsndfile reports SF_COUNT_MAX (e.g. an Ogg stream cut short) */
} opened;

static tsr_status check_params(const char *fn, const tsr_audio_decode_params *p,
                               tsr_error *err) {
    if (p->size != sizeof *p)
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn,
                            "params->size is %zu, expected %zu (use "
                            "tsr_audio_decode_params_default)",
                            p->size, sizeof *p);
    if (p->sample_rate != 0 && (p->sample_rate < MIN_RATE || p->sample_rate > MAX_RATE))
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn,
                            "params->sample_rate %d is outside %d..%d Hz (or 0 to keep the "
                            "file's)",
                            (int)p->sample_rate, MIN_RATE, MAX_RATE);
    if (!(p->limits.max_audio_seconds >= 0.0))
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn,
                            "limits.max_audio_seconds %g is negative",
                            p->limits.max_audio_seconds);
    if (p->limits.max_audio_channels < 0)
        return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn,
                            "limits.max_audio_channels %d is negative",
                            (int)p->limits.max_audio_channels);
    return TSR_OK;
}

/* Sniffs, opens with libsndfile and validates the header against the limits. On success
 * o->sf is open; the caller closes it. */
static tsr_status open_checked(const char *fn, const uint8_t *buf, size_t len,
                               const tsr_audio_decode_params *p, opened *o, tsr_error *err) {
    memset(o, 0, sizeof *o);
    if (!buf && len) return tsr__fail_fn(err, TSR_ERR_INVALID_ARG, fn, "buf is NULL");
    if (len == 0) return tsr__fail_fn(err, TSR_ERR_FORMAT, fn, "audio buffer is empty");
    if (p->limits.max_encoded_bytes && len > p->limits.max_encoded_bytes)
        return tsr__fail_fn(err, TSR_ERR_LIMIT, fn, "encoded audio has %zu bytes, limit is %llu",
                            len, (unsigned long long)p->limits.max_encoded_bytes);
    if ((uint64_t)len > (uint64_t)INT64_MAX)
        return tsr__fail_fn(err, TSR_ERR_LIMIT, fn, "encoded audio is too large");
    if (tsr_media_sniff(buf, len) != TSR_MEDIA_AUDIO)
        return tsr__fail_fn(err, TSR_ERR_FORMAT, fn,
                            "not a recognised audio file (no WAV/FLAC/OGG/MP3/AIFF/AU/CAF "
                            "signature)");
    if (looks_like_mp3(buf, len) && !mp3_supported())
        return tsr__fail_fn(err, TSR_ERR_UNSUPPORTED, fn,
                            "MP3 needs libsndfile >= 1.1 built with mpg123; this one is %s",
                            sf_version_string());
    if (len >= 4 && !memcmp(buf, "OggS", 4)) {
        tsr_status st = check_ogg_vorbis(fn, buf, len, err);
        if (st != TSR_OK) return st;
    }

    o->mem.buf = buf;
    o->mem.len = (sf_count_t)len;
    o->vio.get_filelen = vio_len;
    o->vio.seek = vio_seek;
    o->vio.read = vio_read;
    o->vio.write = vio_write;
    o->vio.tell = vio_tell;
    /* A failed open leaves its message in libsndfile's global error state: keep opens and
     * the read of that message together. */
    pthread_mutex_lock(&g_open_lock);
    o->sf = sf_open_virtual(&o->vio, SFM_READ, &o->info, &o->mem);
    char why[256] = "";
    if (!o->sf) snprintf(why, sizeof why, "%s", sf_strerror(NULL));
    pthread_mutex_unlock(&g_open_lock);
    if (!o->sf) return tsr__fail_fn(err, TSR_ERR_FORMAT, fn, "libsndfile cannot read it: %s", why);

    tsr_status st = TSR_OK;
    const SF_INFO *in = &o->info;
    char sub[64];
    if (!container_name(in->format)) {
        SF_FORMAT_INFO fi;
        memset(&fi, 0, sizeof fi);
        fi.format = in->format & SF_FORMAT_TYPEMASK;
        sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof fi);
        st = tsr__fail_fn(err, TSR_ERR_UNSUPPORTED, fn, "container '%s' is not accepted",
                          fi.name ? fi.name : "?");
    } else if (!subtype_accepted(in->format)) {
        st = tsr__fail_fn(err, TSR_ERR_UNSUPPORTED, fn, "%s encoding '%s' is not supported",
                          container_name(in->format), subtype_name(in->format, sub, sizeof sub));
    } else if (in->channels <= 0) {
        st = tsr__fail_fn(err, TSR_ERR_FORMAT, fn, "header declares %d channels", in->channels);
    } else if (p->limits.max_audio_channels && in->channels > p->limits.max_audio_channels) {
        st = tsr__fail_fn(err, TSR_ERR_LIMIT, fn, "%d channels, limit is max_audio_channels %d",
                          in->channels, (int)p->limits.max_audio_channels);
    } else if (in->samplerate <= 0) {
        st =
            tsr__fail_fn(err, TSR_ERR_FORMAT, fn, "header declares sample rate %d", in->samplerate);
    } else if (in->samplerate < MIN_RATE || in->samplerate > MAX_RATE) {
        st = tsr__fail_fn(err, TSR_ERR_UNSUPPORTED, fn, "sample rate %d Hz is outside %d..%d Hz",
                          in->samplerate, MIN_RATE, MAX_RATE);
    } else if (in->frames < 0) {
        st = tsr__fail_fn(err, TSR_ERR_FORMAT, fn, "header declares %lld frames",
                          (long long)in->frames);
    }
    if (st != TSR_OK) {
        sf_close(o->sf);
        o->sf = NULL;
        return st;
    }

    o->unknown_length = in->frames == SF_COUNT_MAX;
    o->max_frames = INT64_MAX;
    double max_s = p->limits.max_audio_seconds;
    if (max_s > 0.0) {
        double f = floor(max_s * in->samplerate);
        o->max_frames = f < 9.0e18 ? (int64_t)f : INT64_MAX;
        if (!o->unknown_length && in->frames > o->max_frames) {
            st = tsr__fail_fn(err, TSR_ERR_LIMIT, fn,
                              "%lld frames at %d Hz = %.3f s, limit is max_audio_seconds %g",
                              (long long)in->frames, in->samplerate,
                              (double)in->frames / in->samplerate, max_s);
            sf_close(o->sf);
            o->sf = NULL;
            return st;
        }
    }
    return TSR_OK;
}

static void fill_info(const opened *o, tsr_audio_info *info) {
    memset(info, 0, sizeof *info);
    snprintf(info->format, sizeof info->format, "%s", container_name(o->info.format));
    info->sample_rate = o->info.samplerate;
    info->channels = o->info.channels;
    info->frames = o->unknown_length ? -1 : o->info.frames;
    info->duration_s = o->unknown_length ? -1.0 : (double)o->info.frames / o->info.samplerate;
}

tsr_status tsr_audio_probe(const uint8_t *buf, size_t len, const tsr_audio_decode_params *params,
                           tsr_audio_info *info, tsr_error *err) {
    if (info) memset(info, 0, sizeof *info);
    if (!info) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "info is NULL");
    tsr_audio_decode_params defaults = tsr_audio_decode_params_default();
    const tsr_audio_decode_params *p = params ? params : &defaults;
    tsr_status st = check_params(__func__, p, err);
    if (st != TSR_OK) return st;
    opened o;
    st = open_checked(__func__, buf, len, p, &o, err);
    if (st != TSR_OK) return st;
    fill_info(&o, info);
    sf_close(o.sf);
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Decoding and channel mean                                                             */

/* numpy's pairwise summation (FLOAT_pairwise_sum) over n values `stride` apart: np.mean
 * over the channel axis adds a frame's channels this way, in float32. */
static float np_pairwise_sum(const float *a, size_t n, size_t stride) {
    if (n < 8) {
        float res = 0.0f;
        for (size_t i = 0; i < n; i++) res += a[i * stride];
        return res;
    }
    if (n <= 128) {
        float r[8];
        for (size_t j = 0; j < 8; j++) r[j] = a[j * stride];
        size_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (size_t j = 0; j < 8; j++) r[j] += a[(i + j) * stride];
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i * stride];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return np_pairwise_sum(a, n2, stride) + np_pairwise_sum(a + n2 * stride, n - n2, stride);
}

/* Reads every frame (at most the header's count, as python-soundfile does; until the end
 * when the length is unknown) into a mono buffer, growing it as data arrives so a lying
 * header cannot make us allocate. */
static tsr_status decode_mono(opened *o, float **out, int64_t *n_out, tsr_error *err) {
    const int ch = o->info.channels;
    const int64_t want = o->unknown_length ? INT64_MAX : o->info.frames;
    float *block = NULL, *mono = NULL;
    size_t block_n;
    if (!tsr__mul3_size(READ_BLOCK, (size_t)ch, sizeof(float), &block_n) ||
        !(block = tsr__malloc(block_n)))
        return DECODE_FAIL(err, TSR_ERR_OOM, "cannot allocate a %d-channel read block", ch);

    int64_t cap = o->unknown_length           ? 4 * READ_BLOCK
                  : want < FIRST_CAPACITY ? want
                                          : FIRST_CAPACITY;
    int64_t n = 0;
    if (cap < READ_BLOCK) cap = READ_BLOCK;
    mono = tsr__malloc((size_t)cap * sizeof(float));
    if (!mono) {
        tsr__free(block);
        return DECODE_FAIL(err, TSR_ERR_OOM, "cannot allocate %lld samples", (long long)cap);
    }

    tsr_status st = TSR_OK;
    while (n < want) {
        sf_count_t ask = want - n < READ_BLOCK ? want - n : READ_BLOCK;
        sf_count_t got = sf_readf_float(o->sf, block, ask);
        if (got <= 0) break;
        if (n + got > o->max_frames) {
            st = DECODE_FAIL(err, TSR_ERR_LIMIT,
                             "audio is longer than max_audio_seconds (%lld frames at %d Hz)",
                             (long long)o->max_frames, o->info.samplerate);
            break;
        }
        if (n + got > cap) {
            int64_t ncap = cap > INT64_MAX / 2 ? INT64_MAX : cap * 2;
            if (ncap > want) ncap = want;
            size_t bytes;
            float *grown = NULL;
            if (tsr__mul_size((size_t)ncap, sizeof(float), &bytes))
                grown = tsr__realloc(mono, bytes);
            if (!grown) {
                st = DECODE_FAIL(err, TSR_ERR_OOM, "cannot grow the sample buffer to %lld samples",
                              (long long)ncap);
                break;
            }
            mono = grown;
            cap = ncap;
        }
        if (ch == 1) {
            memcpy(mono + n, block, (size_t)got * sizeof(float));
        } else {
            for (sf_count_t i = 0; i < got; i++)
                mono[n + i] = np_pairwise_sum(block + (size_t)i * ch, (size_t)ch, 1) / (float)ch;
        }
        n += got;
    }
    tsr__free(block);
    if (st == TSR_OK && n == 0)
        st = DECODE_FAIL(err, TSR_ERR_FORMAT,
                         "no audio frames could be decoded (header says %lld)",
                         o->unknown_length ? -1LL : (long long)want);
    /* librosa.resample rejects non-finite audio (util.valid_audio); so do we. */
    for (int64_t i = 0; st == TSR_OK && i < n; i++)
        if (!isfinite(mono[i]))
            st = DECODE_FAIL(err, TSR_ERR_FORMAT, "sample %lld is not finite", (long long)i);
    if (st != TSR_OK) {
        tsr__free(mono);
        return st;
    }
    *out = mono;
    *n_out = n;
    return TSR_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Resampling (python-soxr's csoxr_split_ch for one channel, then librosa's fix_length)  */

static tsr_status resample(const float *x, int64_t n_in, int32_t in_rate, int32_t out_rate,
                           float **out, int64_t *n_out, tsr_error *err) {
    const double ratio = (double)out_rate / (double)in_rate;
    /* librosa: n_samples = int(np.ceil(y.shape[-1] * ratio)) */
    const double want_d = ceil((double)n_in * ratio);
    /* python-soxr: olen = ilen * out_rate / in_rate + 1, the most soxr may write */
    const double olen_d = floor((double)n_in * (double)out_rate / (double)in_rate) + 1.0;
    if (want_d > 4.0e18 || olen_d > 4.0e18)
        return DECODE_FAIL(err, TSR_ERR_LIMIT, "%lld samples resampled to %d Hz is too large",
                        (long long)n_in, (int)out_rate);
    const size_t want = (size_t)want_d, olen = (size_t)olen_d;
    const size_t alloc_n = want > olen ? want : olen;
    float *y = tsr__calloc(alloc_n, sizeof(float));
    if (!y)
        return DECODE_FAIL(err, TSR_ERR_OOM, "cannot allocate %zu resampled samples", alloc_n);

    soxr_error_t serr = NULL;
    const soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_S, SOXR_FLOAT32_S);
    const soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
    soxr_t s = soxr_create((double)in_rate, (double)out_rate, 1, &serr, &io, &q, NULL);
    if (!s || serr) {
        tsr__free(y);
        if (s) soxr_delete(s);
        return DECODE_FAIL(err, TSR_ERR_INTERNAL, "soxr_create(%d -> %d Hz): %s", (int)in_rate,
                        (int)out_rate, serr ? serr : "failed");
    }
    /* python-soxr feeds max(1000, 48000 * in / out) input samples per soxr_process call. */
    double div_d = 48000.0 * (double)in_rate / (double)out_rate;
    const size_t div = (size_t)(div_d > 1000.0 ? div_d : 1000.0);
    size_t pos = 0, done = 0;
    for (size_t i = 0; i < (size_t)n_in && !serr; i += div) {
        size_t chunk = (size_t)n_in - i < div ? (size_t)n_in - i : div;
        const float *ip[1] = {x + i};
        float *op[1] = {y + pos};
        done = 0;
        serr = soxr_process(s, (soxr_in_t)ip, chunk, NULL, (soxr_out_t)op, olen - pos, &done);
        pos += done;
    }
    if (!serr) {
        float *op[1] = {y + pos};
        done = 0;
        serr = soxr_process(s, NULL, 0, NULL, (soxr_out_t)op, olen - pos, &done);
        pos += done;
    }
    soxr_delete(s);
    if (serr) {
        tsr__free(y);
        return DECODE_FAIL(err, TSR_ERR_INTERNAL, "soxr_process: %s", serr);
    }
    /* fix_length: keep the first `want` samples; anything soxr did not write stays 0. */
    for (size_t i = pos; i < want; i++) y[i] = 0.0f;
    /* Float input near FLT_MAX overflows in the filter (librosa would return inf). */
    for (size_t i = 0; i < want; i++)
        if (!isfinite(y[i])) {
            tsr__free(y);
            return DECODE_FAIL(err, TSR_ERR_FORMAT,
                               "resampled sample %zu is not finite (input samples too large)", i);
        }
    *out = y;
    *n_out = (int64_t)want;
    return TSR_OK;
}

tsr_status tsr_audio_decode(const uint8_t *buf, size_t len, const tsr_audio_decode_params *params,
                            tsr_audio *out, tsr_audio_info *info, tsr_error *err) {
    if (out) memset(out, 0, sizeof *out);
    if (info) memset(info, 0, sizeof *info);
    if (!out) return TSR_FAIL(err, TSR_ERR_INVALID_ARG, "out is NULL");
    tsr_audio_decode_params defaults = tsr_audio_decode_params_default();
    const tsr_audio_decode_params *p = params ? params : &defaults;
    tsr_status st = check_params(__func__, p, err);
    if (st != TSR_OK) return st;

    opened o;
    st = open_checked(__func__, buf, len, p, &o, err);
    if (st != TSR_OK) return st;
    float *mono = NULL;
    int64_t n = 0;
    st = decode_mono(&o, &mono, &n, err);
    tsr_audio_info got;
    fill_info(&o, &got);
    if (o.unknown_length && st == TSR_OK) { /* now we know */
        got.frames = n;
        got.duration_s = (double)n / got.sample_rate;
    }
    sf_close(o.sf);
    if (st != TSR_OK) return st;

    const int32_t in_rate = got.sample_rate;
    const int32_t out_rate = p->sample_rate ? p->sample_rate : in_rate;
    if (out_rate != in_rate) {
        float *y = NULL;
        int64_t ny = 0;
        st = resample(mono, n, in_rate, out_rate, &y, &ny, err);
        tsr__free(mono);
        if (st != TSR_OK) return st;
        mono = y;
        n = ny;
    }
    out->sample_rate = out_rate;
    out->n_samples = n;
    out->samples = mono;
    if (info) *info = got;
    return TSR_OK;
}
