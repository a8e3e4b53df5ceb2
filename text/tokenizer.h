/*
 * tokenizer.h - internal structures of the tokenizer (text/tokenizer*.c). Not installed.
 *
 * The pipeline mirrors Hugging Face `tokenizers`: added tokens are split out of the raw text,
 * the rest is normalized, pre-tokenized into words, each word is run through the BPE model,
 * and the post-processor adds the template's special tokens. Decoding runs the decoder chain
 * over the token strings.
 *
 * Byte-level tokenizers keep their vocabulary in "model space" = raw bytes: every token
 * string written with the GPT-2 byte-to-unicode alphabet is mapped back to the bytes it
 * stands for at load time, so encoding never builds the mapped string.
 */
#ifndef TSR_TEXT_TOKENIZER_H
#define TSR_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tessera_internal.h"

/* Largest token id accepted in a tokenizer.json (vocabularies are ~10^5..10^6). */
#define TSR__TOK_MAX_ID (1 << 24)

/* ---- byte strings and hash maps -------------------------------------------------------- */

uint64_t tsr__tok_hash(const void *p, size_t n);

/* String -> int32 map over an internal arena. */
typedef struct tsr__strmap_slot {
    uint32_t hash, len; /* len == UINT32_MAX: empty */
    uint32_t off;       /* key bytes at arena + off */
    int32_t value;
} tsr__strmap_slot;

typedef struct tsr__strmap {
    tsr__strmap_slot *slots; /* cap entries, cap a power of two */
    size_t cap, count;
    char *arena;
    size_t arena_len, arena_cap;
} tsr__strmap;

tsr_status tsr__strmap_put(tsr__strmap *m, const char *s, size_t n, int32_t value, tsr_error *err);
/* Returns the value or -1. */
int32_t tsr__strmap_get(const tsr__strmap *m, const char *s, size_t n);
void tsr__strmap_free(tsr__strmap *m);

/* (left id, right id) -> (rank, new id) merge table. */
typedef struct tsr__pairmap {
    uint64_t *keys; /* (left << 32 | right) + 1; 0 = empty */
    uint64_t *vals; /* rank << 32 | new id */
    size_t cap, count;
} tsr__pairmap;

tsr_status tsr__pairmap_put(tsr__pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id,
                            tsr_error *err);
/* Returns true and fills rank/id when the pair is a merge. */
static inline bool tsr__pairmap_get(const tsr__pairmap *m, uint32_t a, uint32_t b, uint32_t *rank,
                                    uint32_t *id) {
    if (!m->cap) return false;
    uint64_t key = (((uint64_t)a << 32) | b) + 1;
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *rank = (uint32_t)(m->vals[i] >> 32);
            *id = (uint32_t)m->vals[i];
            return true;
        }
        if (k == 0) return false;
        i = (i + 1) & mask;
    }
}
void tsr__pairmap_free(tsr__pairmap *m);

/* Growable byte buffer. */
typedef struct tsr__buf {
    char *p;
    size_t len, cap;
} tsr__buf;

tsr_status tsr__buf_reserve(tsr__buf *b, size_t extra, tsr_error *err);
tsr_status tsr__buf_put(tsr__buf *b, const void *s, size_t n, tsr_error *err);
void tsr__buf_free(tsr__buf *b);

/* Growable int32 vector. */
typedef struct tsr__ivec {
    int32_t *p;
    size_t len, cap;
} tsr__ivec;

tsr_status tsr__ivec_push(tsr__ivec *v, int32_t x, tsr_error *err);
void tsr__ivec_free(tsr__ivec *v);

/* ---- Unicode helpers ------------------------------------------------------------------ */

/* Decodes one code point at s[0..n) (valid UTF-8 assumed); returns its byte length. */
size_t tsr__utf8_decode(const uint8_t *s, size_t n, int32_t *cp);
size_t tsr__utf8_encode(int32_t cp, char out[4]);
/* Length of the valid UTF-8 prefix of s (== n when all valid). */
size_t tsr__utf8_valid_prefix(const uint8_t *s, size_t n);
/* Appends s with every ill-formed subsequence replaced by U+FFFD, as Rust's
 * String::from_utf8_lossy does (one U+FFFD per maximal ill-formed subpart). */
tsr_status tsr__utf8_lossy(tsr__buf *out, const uint8_t *s, size_t n, tsr_error *err);
/* Rust char::is_whitespace (Unicode White_Space). */
bool tsr__is_whitespace(int32_t cp);

/* GPT-2 byte <-> unicode alphabet. */
int32_t tsr__byte_to_char(uint8_t b);
int tsr__char_to_byte(int32_t cp); /* -1 when cp is not in the alphabet */

/* ---- pipeline components ---------------------------------------------------------------- */

/* Normalizer (a Sequence is flattened into the list). */
typedef enum {
    TSR__NORM_NFC, TSR__NORM_NFD, TSR__NORM_NFKC, TSR__NORM_NFKD, TSR__NORM_LOWERCASE,
    TSR__NORM_PREPEND, TSR__NORM_REPLACE, TSR__NORM_STRIP, TSR__NORM_STRIP_ACCENTS
} tsr__norm_kind;

typedef struct tsr__norm {
    tsr__norm_kind kind;
    char *str;           /* PREPEND: prefix; REPLACE: literal pattern (when re == NULL) */
    size_t str_len;
    char *content;       /* REPLACE: replacement */
    size_t content_len;
    pcre2_code *re;      /* REPLACE with a Regex pattern */
    bool left, right;    /* STRIP */
} tsr__norm;

/* Pre-tokenizer step (a Sequence is flattened). */
typedef enum {
    TSR__PRE_SPLIT, TSR__PRE_BYTELEVEL, TSR__PRE_METASPACE, TSR__PRE_DIGITS
} tsr__pre_kind;

typedef enum {
    TSR__SPLIT_REMOVED, TSR__SPLIT_ISOLATED, TSR__SPLIT_MERGED_PREV, TSR__SPLIT_MERGED_NEXT,
    TSR__SPLIT_CONTIGUOUS
} tsr__split_behavior;

typedef enum { TSR__PREPEND_ALWAYS, TSR__PREPEND_FIRST, TSR__PREPEND_NEVER } tsr__prepend_scheme;

typedef struct tsr__pre {
    tsr__pre_kind kind;
    pcre2_code *re;             /* SPLIT pattern; BYTELEVEL with use_regex: the GPT-2 pattern */
    tsr__split_behavior behavior;
    bool invert;
    bool add_prefix_space;      /* BYTELEVEL */
    bool use_regex;             /* BYTELEVEL */
    int32_t replacement;        /* METASPACE replacement char */
    tsr__prepend_scheme prepend;
    bool split;                 /* METASPACE: split on the replacement */
    bool individual_digits;     /* DIGITS */
} tsr__pre;

/* Decoder step (a Sequence is flattened). */
typedef enum {
    TSR__DEC_BYTELEVEL, TSR__DEC_METASPACE, TSR__DEC_BYTE_FALLBACK, TSR__DEC_FUSE, TSR__DEC_STRIP,
    TSR__DEC_REPLACE
} tsr__dec_kind;

typedef struct tsr__dec {
    tsr__dec_kind kind;
    char *pattern;  /* REPLACE literal */
    size_t pattern_len;
    char *content;  /* REPLACE replacement; STRIP: the char to strip */
    size_t content_len;
    int32_t replacement;             /* METASPACE */
    tsr__prepend_scheme prepend;     /* METASPACE */
    int64_t start, stop;             /* STRIP */
} tsr__dec;

typedef struct tsr__added {
    char *content;       /* as written (non-normalized tokens) */
    size_t len;
    char *match;         /* what is matched: content, or content normalized */
    size_t match_len;
    int32_t id;
    bool special, lstrip, rstrip, normalized, single_word;
} tsr__added;

/* Byte trie over added-token strings for leftmost-longest matching. */
typedef struct tsr__trie_node {
    int32_t child;   /* first child or -1 */
    int32_t sibling; /* next sibling or -1 */
    int32_t token;   /* index into tok->added or -1 */
    uint8_t byte;
} tsr__trie_node;

typedef struct tsr__trie {
    tsr__trie_node *nodes;
    size_t n, cap;
    uint8_t first[32]; /* bitmap of first bytes */
} tsr__trie;

struct tsr_tokenizer {
    /* id -> token string as written in tokenizer.json (NUL-terminated), NULL for holes */
    char **id_str;
    uint32_t *id_len;
    uint8_t *id_special; /* 1 = added token marked special (skipped by skip_special) */
    int32_t n_ids;       /* max id + 1 */

    tsr__strmap tok2id;  /* token string (as written) -> id, added tokens first */

    /* BPE model */
    tsr__strmap model;   /* model space (raw bytes when byte_level) -> id */
    tsr__pairmap merges;
    bool byte_level;     /* the pre-tokenizer ends with ByteLevel: units are bytes */
    bool byte_fallback, ignore_merges, fuse_unk;
    int32_t unk_id;
    int32_t byte_unit[256];     /* byte_level: id of the token for a single byte, or -1 */
    int32_t byte_fallback_id[256]; /* id of "<0xNN>", or -1 */

    tsr__norm *norms;
    size_t n_norms;
    tsr__pre *pres;
    size_t n_pres;
    tsr__dec *decs;
    size_t n_decs;

    /* post-processor: ids before and after the sequence (TemplateProcessing "single") */
    int32_t *post_prefix, *post_suffix;
    size_t n_post_prefix, n_post_suffix;

    tsr__added *added;
    size_t n_added;
    tsr__trie raw_trie;  /* non-normalized added tokens, matched on the raw text */
    tsr__trie norm_trie; /* normalized added tokens, matched on the normalized text */

    int32_t bos_id, eos_id, pad_id, unk_cfg_id;
};

/* Compiles a pattern (UTF, UCP) and JIT-compiles it when possible. */
tsr_status tsr__tok_regex(const char *pat, size_t len, bool literal, pcre2_code **out,
                          tsr_error *err);

/* Runs the normalizers over s[0..n); the result is in out (cleared first). */
tsr_status tsr__tok_normalize(const struct tsr_tokenizer *tok, const char *s, size_t n,
                              tsr__buf *out, tsr_error *err);

/* A word produced by the pre-tokenizer: bytes at buf + off. */
typedef struct tsr__piece {
    size_t off, len;
    bool first; /* starts at offset 0 of the original text (Metaspace prepend_scheme "first") */
} tsr__piece;

typedef struct tsr__pieces {
    tsr__buf buf;
    tsr__piece *p;
    size_t n, cap;
} tsr__pieces;

tsr_status tsr__pieces_push(tsr__pieces *ps, size_t off, size_t len, bool first, tsr_error *err);
void tsr__pieces_free(tsr__pieces *ps);

/* Scratch reused across the pre-tokenizer steps of one encode call. */
typedef struct tsr__pre_scratch {
    tsr__pieces tmp;
    pcre2_match_data *md;
} tsr__pre_scratch;

/* Pre-tokenizes s[0..n) (a normalized segment); words end up in out (cleared first). */
tsr_status tsr__tok_pretokenize(const struct tsr_tokenizer *tok, const char *s, size_t n,
                                bool first, tsr__pieces *out, tsr__pre_scratch *scratch,
                                tsr_error *err);
void tsr__pre_scratch_free(tsr__pre_scratch *s);

/* Per-call BPE state: scratch and a word cache. */
typedef struct tsr__bpe_ctx tsr__bpe_ctx;
tsr__bpe_ctx *tsr__bpe_ctx_new(void);
void tsr__bpe_ctx_free(tsr__bpe_ctx *ctx);
/* Appends the ids of one word (model space bytes) to out. */
tsr_status tsr__bpe_word(const struct tsr_tokenizer *tok, tsr__bpe_ctx *ctx, const char *w,
                         size_t n, tsr__ivec *out, tsr_error *err);

/* Decodes ids with the decoder chain into out (cleared first). Ids must be valid. */
tsr_status tsr__tok_decode(const struct tsr_tokenizer *tok, const int32_t *ids, size_t n,
                           bool skip_special, tsr__buf *out, tsr_error *err);

/* Frees the component arrays (used by tsr_tokenizer_free). */
void tsr__tok_free_components(struct tsr_tokenizer *tok);

#endif /* TSR_TEXT_TOKENIZER_H */
