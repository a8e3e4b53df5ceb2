/* Tokenizer parity on real checkpoint vocabularies (fixtures from tools/refgen/gen_real_vocab.py):
 * encode with and without special tokens, decode both ways, streaming decode, against
 * Hugging Face `tokenizers` on the converted tokenizer.json. The vocabularies are not in the
 * repository; a fixture whose tokenizer is absent from the cache (or differs from the one the
 * fixture was made from) is skipped with the command that creates it. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "harness.h"
#include "tokenizer_check.h"
#include "tessera.h"

/* All four (venv and pins set up by refgen.sh), or one once the venv exists. */
#define REGEN_ALL "tools/refgen/refgen.sh real_vocab"
#define REGEN_ONE "tools/refgen/.venv/bin/python tools/refgen/gen_real_vocab.py tests/fixtures"

/* ---- SHA-256 (FIPS 180-4), to tie a cached tokenizer.json to its fixture ---------------- */

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static uint32_t ror(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

/* hex: 65 bytes out. */
static void sha256_hex(const uint8_t *data, size_t n, char hex[65]) {
    uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                     0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    size_t i = 0;
    for (; i + 64 <= n; i += 64) sha256_block(h, data + i);
    uint8_t tail[128] = {0};
    size_t r = n - i;
    memcpy(tail, data + i, r);
    tail[r] = 0x80;
    size_t tl = r + 9 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++) tail[tl - 1 - k] = (uint8_t)(bits >> (8 * k));
    sha256_block(h, tail);
    if (tl == 128) sha256_block(h, tail + 64);
    for (int k = 0; k < 8; k++) snprintf(hex + 8 * k, 9, "%08x", (unsigned)h[k]);
}

static void test_sha256(void) {
    char hex[65];
    sha256_hex((const uint8_t *)"abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    sha256_hex((const uint8_t *)"", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: two pad blocks */
    sha256_hex((const uint8_t *)m, strlen(m), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

/* ---- parity ------------------------------------------------------------------------------ */

static const char *str_item(const cJSON *o, const char *key) {
    const cJSON *s = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(s) ? s->valuestring : "";
}

/* The cached model dir for `name`: $TSR_REAL_VOCAB/<name>, else the fixture's .cache. */
static const char *cache_dir(const char *name) {
    static char buf[1024];
    const char *base = getenv("TSR_REAL_VOCAB");
    if (base && *base) {
        snprintf(buf, sizeof buf, "%s/%s", base, name);
        return buf;
    }
    char rel[256];
    snprintf(rel, sizeof rel, "real_vocab/.cache/%s", name);
    snprintf(buf, sizeof buf, "%s", tsr_test_fixture(rel));
    return buf;
}

static void parity(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "real_vocab/%s/cases.json", name);
    size_t n = 0;
    uint8_t *buf = tsr_test_read(tsr_test_fixture(rel), &n);
    cJSON *cases = buf ? cJSON_ParseWithLength((const char *)buf, n) : NULL;
    free(buf);
    CHECK_MSG(cases != NULL, "%s: cannot read %s", name, rel);
    if (!cases) return;

    const char *dir = cache_dir(name);
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    uint8_t *tj = tsr_test_read(path, &n);
    if (!tj) {
        tsr_test_skip("%s: no converted tokenizer at %s (create it with %s, or %s %s)", name, dir, REGEN_ALL,
                      REGEN_ONE, name);
        cJSON_Delete(cases);
        return;
    }
    char hex[65];
    sha256_hex(tj, n, hex);
    free(tj);
    const char *want_hex = str_item(cases, "tokenizer_sha256");
    if (strcmp(hex, want_hex)) {
        tsr_test_skip("%s: %s has sha256 %s, the fixture was made from %s (recreate both with %s, or %s %s)",
                      name, path, hex, want_hex, REGEN_ALL, REGEN_ONE, name);
        cJSON_Delete(cases);
        return;
    }
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_tokenizer_load(dir, &tok, &err), &err);
    if (!tok) {
        cJSON_Delete(cases);
        return;
    }

    int n_enc = 0, bad_enc = 0, n_dec = 0, bad_dec = 0, budget = 12;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases, "encode")) {
        const char *text = str_item(c, "text");
        bool ok = true;
        for (int special = 0; special < 2; special++) {
            tsr_token_ids ids = {0};
            CHECK_OK(tsr_tokenizer_encode(tok, text, strlen(text), special, &ids, &err), &err);
            size_t wn;
            int32_t *w = json_ids(cJSON_GetObjectItem(c, special ? "ids_special" : "ids"), &wn);
            if (ids.n != wn || (wn && memcmp(ids.ids, w, wn * sizeof *w))) {
                if (budget-- > 0) {
                    fprintf(stderr, "%s: encode(special=%d) mismatch for \"%s\"\n", name, special, text);
                    print_ids("got ", ids.ids, ids.n);
                    print_ids("want", w, wn);
                }
                ok = false;
            }
            free(w);
            tsr_token_ids_free(&ids);
        }
        size_t k;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids_special"), &k);
        const char *dec = str_item(c, "decode");
        ok &= check_decode(tok, ids, k, 0, dec, name, &budget);
        ok &= check_decode(tok, ids, k, 1, str_item(c, "decode_skip"), name, &budget);
        ok &= check_stream(tok, ids, k, NULL, dec, name, &budget);
        free(ids);
        n_enc++;
        bad_enc += !ok;
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cases, "decode")) {
        size_t k;
        int32_t *ids = json_ids(cJSON_GetObjectItem(c, "ids"), &k);
        bool ok = check_decode(tok, ids, k, 0, str_item(c, "text"), name, &budget);
        ok &= check_decode(tok, ids, k, 1, str_item(c, "text_skip"), name, &budget);
        const cJSON *chunks = cJSON_GetObjectItem(c, "stream");
        if (cJSON_IsArray(chunks)) ok &= check_stream(tok, ids, k, chunks, NULL, name, &budget);
        free(ids);
        n_dec++;
        bad_dec += !ok;
    }
    CHECK_MSG(bad_enc == 0 && bad_dec == 0, "%s: %d/%d encode cases and %d/%d decode cases differ", name,
              bad_enc, n_enc, bad_dec, n_dec);
    CHECK(n_enc >= 2000);
    printf("  %s: vocab %d, %d encode cases, %d decode cases, %d + %d differ\n", name,
           (int)tsr_tokenizer_vocab_size(tok), n_enc, n_dec, bad_enc, bad_dec);
    tsr_tokenizer_free(tok);
    cJSON_Delete(cases);
}

/* One case per fixture dir in tests/fixtures/real_vocab/ (gen_real_vocab.py's VOCABS). */
static void real_mistral_tekken_240911(void) { parity("mistral_tekken_240911"); }
static void real_mistral_spm_v1(void) { parity("mistral_spm_v1"); }
static void real_llama3(void) { parity("llama3"); }
static void real_qwen2(void) { parity("qwen2"); }

int main(void) {
    tsr_test_run("sha256", test_sha256);
    tsr_test_run("real_vocab_mistral_tekken_240911", real_mistral_tekken_240911);
    tsr_test_run("real_vocab_mistral_spm_v1", real_mistral_spm_v1);
    tsr_test_run("real_vocab_llama3", real_llama3);
    tsr_test_run("real_vocab_qwen2", real_qwen2);
    return tsr_test_finish();
}
