#include <string.h>

#include "tessera_internal.h"

static bool starts(const uint8_t *buf, size_t len, const char *magic, size_t n) {
    return len >= n && !memcmp(buf, magic, n);
}

tsr_media_kind tsr_media_sniff(const uint8_t *buf, size_t len) {
    if (!buf) return TSR_MEDIA_UNKNOWN;
    if (starts(buf, len, "\x89PNG\r\n\x1a\n", 8) || starts(buf, len, "\xff\xd8\xff", 3))
        return TSR_MEDIA_IMAGE;
    if ((starts(buf, len, "RIFF", 4) || starts(buf, len, "RIFX", 4) ||
         starts(buf, len, "RF64", 4)) && len >= 12 && !memcmp(buf + 8, "WAVE", 4))
        return TSR_MEDIA_AUDIO;
    if (starts(buf, len, "fLaC", 4) || starts(buf, len, "OggS", 4) ||
        starts(buf, len, "ID3", 3) || starts(buf, len, "FORM", 4) ||
        starts(buf, len, ".snd", 4) || starts(buf, len, "riff", 4) ||
        starts(buf, len, "caff", 4))
        return TSR_MEDIA_AUDIO;
    /* MPEG audio frame sync: 11 set bits, a valid layer and bitrate index. */
    if (len >= 2 && buf[0] == 0xff && (buf[1] & 0xe0) == 0xe0 && (buf[1] & 0x06) != 0)
        return TSR_MEDIA_AUDIO;
    return TSR_MEDIA_UNKNOWN;
}
