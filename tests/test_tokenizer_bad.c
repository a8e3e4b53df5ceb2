/* Bad tokenizer.json files fail cleanly with the right status and a message naming the
 * problem; allocation failures during load and encode are clean OOMs. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tessera.h"
#include "tessera_internal.h"

#define MODEL "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<s>\":3},\"merges\":[\"a b\"]}"

static const struct bad_case {
    const char *name;
    const char *json;
    tsr_status want;
    const char *needle; /* must appear in the message */
} CASES[] = {
    {"truncated", "{\"model\":{\"type\":\"BPE\"", TSR_ERR_FORMAT, "not valid JSON"},
    {"empty", "", TSR_ERR_FORMAT, "not valid JSON"},
    {"not an object", "[1,2]", TSR_ERR_FORMAT, "not a JSON object"},
    {"no model", "{\"normalizer\":null}", TSR_ERR_FORMAT, "\"model\""},
    {"unigram", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[[\"a\",0.0]]}}", TSR_ERR_UNSUPPORTED, "Unigram"},
    {"wordpiece", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}}", TSR_ERR_UNSUPPORTED, "WordPiece"},
    {"wordlevel untyped", "{\"model\":{\"vocab\":{\"a\":0}}}", TSR_ERR_UNSUPPORTED, "only BPE"},
    {"bert normalizer", "{" MODEL ",\"normalizer\":{\"type\":\"BertNormalizer\"}}", TSR_ERR_UNSUPPORTED, "BertNormalizer"},
    {"precompiled in sequence", "{" MODEL ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Precompiled\"}]}}",
     TSR_ERR_UNSUPPORTED, "Precompiled"},
    {"whitespace pre-tokenizer", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", TSR_ERR_UNSUPPORTED, "Whitespace"},
    {"wordpiece decoder", "{" MODEL ",\"decoder\":{\"type\":\"WordPiece\"}}", TSR_ERR_UNSUPPORTED, "WordPiece"},
    {"unknown post-processor", "{" MODEL ",\"post_processor\":{\"type\":\"Fancy\"}}", TSR_ERR_UNSUPPORTED, "Fancy"},
    {"bad split regex", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a[\"},\"behavior\":\"Isolated\",\"invert\":false}}",
     TSR_ERR_FORMAT, "(a["},
    {"bad replace regex", "{" MODEL ",\"normalizer\":{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"x{2,1}\"},\"content\":\"y\"}}",
     TSR_ERR_FORMAT, "x{2,1}"},
    {"split behavior", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"}}",
     TSR_ERR_FORMAT, "Sideways"},
    {"split pattern", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":\" \",\"behavior\":\"Isolated\"}}",
     TSR_ERR_FORMAT, "pattern"},
    {"bytelevel not last", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\"},{\"type\":\"Digits\"}]}}",
     TSR_ERR_UNSUPPORTED, "after ByteLevel"},
    {"metaspace scheme", "{" MODEL ",\"pre_tokenizer\":{\"type\":\"Metaspace\",\"prepend_scheme\":\"sometimes\"}}", TSR_ERR_FORMAT, "sometimes"},
    {"metaspace replacement", "{" MODEL ",\"decoder\":{\"type\":\"Metaspace\",\"replacement\":\"ab\"}}", TSR_ERR_FORMAT, "one character"},
    {"strip decoder", "{" MODEL ",\"decoder\":{\"type\":\"Strip\",\"content\":\" \",\"start\":-1,\"stop\":0}}", TSR_ERR_FORMAT, "Strip"},
    {"merge unknown token", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\",\"a zz\"]}}",
     TSR_ERR_FORMAT, "unknown token \"zz\""},
    {"merge pair unknown token", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[\"q\",\"b\"]]}}",
     TSR_ERR_FORMAT, "unknown token \"q\""},
    {"merge result missing", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
     TSR_ERR_FORMAT, "not in the vocabulary"},
    {"merge three parts", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b c\"]}}",
     TSR_ERR_FORMAT, "merge 0"},
    {"merge not strings", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[[1,2]]}}",
     TSR_ERR_FORMAT, "merge 0"},
    {"merges not a list", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":{}}}", TSR_ERR_FORMAT, "merges"},
    {"vocab not object", "{\"model\":{\"type\":\"BPE\",\"vocab\":[],\"merges\":[]}}", TSR_ERR_FORMAT, "vocab"},
    {"negative id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", TSR_ERR_FORMAT, "\"a\""},
    {"fractional id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1.5},\"merges\":[]}}", TSR_ERR_FORMAT, "\"a\""},
    {"huge id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e12},\"merges\":[]}}", TSR_ERR_FORMAT, "\"a\""},
    {"string id", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}}", TSR_ERR_FORMAT, "\"a\""},
    {"unk missing", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"unk_token\":\"<unk>\"}}",
     TSR_ERR_FORMAT, "<unk>"},
    {"dropout", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"dropout\":0.1}}", TSR_ERR_UNSUPPORTED, "dropout"},
    {"subword prefix", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[],\"continuing_subword_prefix\":\"##\"}}",
     TSR_ERR_UNSUPPORTED, "continuing_subword_prefix"},
    {"added tokens not list", "{" MODEL ",\"added_tokens\":{}}", TSR_ERR_FORMAT, "added_tokens"},
    {"added token no content", "{" MODEL ",\"added_tokens\":[{\"id\":5}]}", TSR_ERR_FORMAT, "content"},
    {"added token no id", "{" MODEL ",\"added_tokens\":[{\"content\":\"<x>\"}]}", TSR_ERR_FORMAT, "id"},
    {"added token huge id", "{" MODEL ",\"added_tokens\":[{\"id\":4000000000,\"content\":\"<x>\"}]}", TSR_ERR_FORMAT, "id"},
    {"template unknown special", "{" MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<bos>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{}}}",
     TSR_ERR_FORMAT, "<bos>"},
    {"template id out of range", "{" MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[99],\"tokens\":[\"<s>\"]}}}}",
     TSR_ERR_FORMAT, "TemplateProcessing"},
    {"template without A", "{" MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[],\"special_tokens\":{}}}",
     TSR_ERR_FORMAT, "sequence A"},
    {"template string form", "{" MODEL ",\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":\"<s> $A\"}}",
     TSR_ERR_UNSUPPORTED, "single"},
    {"lone surrogate", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"\\udc00\":0},\"merges\":[]}}", TSR_ERR_FORMAT, "JSON"},
};

static void test_bad_table(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const struct bad_case *c = &CASES[i];
        tsr_tokenizer *tok = (tsr_tokenizer *)&tok; /* must be reset to NULL */
        tsr_error err = {0};
        tsr_status st = tsr_tokenizer_load_memory(c->json, strlen(c->json), NULL, 0, NULL, 0, &tok, &err);
        CHECK_MSG(st == c->want, "%s: got %s (%s), want %s", c->name, tsr_status_name(st), err.message,
                  tsr_status_name(c->want));
        CHECK_MSG(tok == NULL, "%s: out not NULL on failure", c->name);
        CHECK_MSG(strstr(err.message, c->needle) != NULL, "%s: message \"%s\" lacks \"%s\"", c->name,
                  err.message, c->needle);
        if (st == TSR_OK) tsr_tokenizer_free(tok);
    }
}

static void test_deep_nesting(void) {
    char json[4096];
    size_t n = (size_t)snprintf(json, sizeof json, "{" MODEL ",\"normalizer\":");
    for (int i = 0; i < 40; i++) n += (size_t)snprintf(json + n, sizeof json - n, "{\"type\":\"Sequence\",\"normalizers\":[");
    n += (size_t)snprintf(json + n, sizeof json - n, "{\"type\":\"NFC\"}");
    for (int i = 0; i < 40; i++) n += (size_t)snprintf(json + n, sizeof json - n, "]}");
    snprintf(json + n, sizeof json - n, "}");
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    CHECK(tsr_tokenizer_load_memory(json, strlen(json), NULL, 0, NULL, 0, &tok, &err) == TSR_ERR_LIMIT);
    CHECK(tok == NULL);
}

static void test_bad_configs(void) {
    const char *tj = "{" MODEL "}";
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    CHECK(tsr_tokenizer_load_memory(tj, strlen(tj), "{bad", 4, NULL, 0, &tok, &err) == TSR_ERR_FORMAT);
    CHECK(strstr(err.message, "tokenizer_config.json") != NULL);
    CHECK(tsr_tokenizer_load_memory(tj, strlen(tj), NULL, 0, "[", 1, &tok, &err) == TSR_ERR_FORMAT);
    CHECK(strstr(err.message, "special_tokens_map.json") != NULL);
    CHECK(tsr_tokenizer_load_memory(NULL, 0, NULL, 0, NULL, 0, &tok, &err) == TSR_ERR_INVALID_ARG);
    CHECK(tsr_tokenizer_load_memory(tj, strlen(tj), NULL, 0, NULL, 0, NULL, &err) == TSR_ERR_INVALID_ARG);
    /* Names that are not tokens leave the ids unset; config tokens missing from tokenizer.json
     * are registered from added_tokens_decoder. */
    const char *cfg = "{\"bos_token\":\"<nope>\",\"eos_token\":{\"content\":\"<eos>\"},"
                      "\"added_tokens_decoder\":{\"7\":{\"content\":\"<eos>\",\"special\":true},\"x\":{}}}";
    CHECK_OK(tsr_tokenizer_load_memory(tj, strlen(tj), cfg, strlen(cfg), NULL, 0, &tok, &err), &err);
    if (tok) {
        CHECK(tsr_tokenizer_bos_id(tok) == -1);
        CHECK(tsr_tokenizer_eos_id(tok) == 7);
        CHECK(tsr_tokenizer_is_special(tok, 7));
        CHECK(tsr_tokenizer_vocab_size(tok) == 8);
        tsr_token_ids ids = {0};
        CHECK_OK(tsr_tokenizer_encode(tok, "ab<eos>a", 8, 1, &ids, &err), &err);
        CHECK(ids.n == 3 && ids.ids[0] == 2 && ids.ids[1] == 7 && ids.ids[2] == 0);
        /* id 5 is a hole in the vocabulary */
        int32_t hole = 5;
        char *text = NULL;
        CHECK(tsr_tokenizer_decode(tok, &hole, 1, 0, &text, NULL, &err) == TSR_ERR_INVALID_ARG);
        tsr_token_ids_free(&ids);
        tsr_tokenizer_free(tok);
    }
}

/* Fails allocation 1, 2, ... of a load and of an encode: each is a clean OOM (no leak, no
 * crash) until the operation succeeds. */
static void test_alloc_failpoints(void) {
    const char *tj =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<s>\":3,\"c\":4,\"\\u2581\":5,\"<0x61>\":6},"
        "\"merges\":[[\"a\",\"b\"]],\"byte_fallback\":true},"
        "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"Prepend\",\"prepend\":\"\\u2581\"}]},"
        "\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"MergedWithNext\",\"invert\":false},"
        "\"added_tokens\":[{\"id\":3,\"content\":\"<s>\",\"special\":true,\"normalized\":false},"
        "{\"id\":7,\"content\":\"ca\",\"special\":false,\"normalized\":true}],"
        "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
        "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[3],\"tokens\":[\"<s>\"]}}},"
        "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\\u2581\"},\"content\":\" \"},"
        "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}}";
    tsr_tokenizer *tok = NULL;
    tsr_error err = {0};
    bool loaded = false;
    for (long n = 1; n < 2000 && !loaded; n++) {
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_tokenizer_load_memory(tj, strlen(tj), NULL, 0, NULL, 0, &tok, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) { loaded = true; break; }
        CHECK_MSG(st == TSR_ERR_OOM && tok == NULL, "load failpoint %ld: %s %s", n, tsr_status_name(st), err.message);
    }
    CHECK(loaded);
    if (!tok) return;
    const char *text = "ab ab<s>cab \xc3\xa9 ca  abab";
    bool encoded = false;
    for (long n = 1; n < 2000 && !encoded; n++) {
        tsr_token_ids ids = {0};
        tsr__alloc_failpoint(n);
        tsr_status st = tsr_tokenizer_encode(tok, text, strlen(text), 1, &ids, &err);
        tsr__alloc_failpoint(0);
        if (st == TSR_OK) {
            encoded = true;
            char *out = NULL;
            for (long k = 1; k < 500; k++) {
                tsr__alloc_failpoint(k);
                st = tsr_tokenizer_decode(tok, ids.ids, ids.n, 0, &out, NULL, &err);
                tsr__alloc_failpoint(0);
                if (st == TSR_OK) break;
                CHECK_MSG(st == TSR_ERR_OOM, "decode failpoint %ld: %s", k, tsr_status_name(st));
            }
            tsr_tokenizer_text_free(out);
        } else {
            CHECK_MSG(st == TSR_ERR_OOM && ids.ids == NULL, "encode failpoint %ld: %s %s", n, tsr_status_name(st),
                      err.message);
        }
        tsr_token_ids_free(&ids);
    }
    CHECK(encoded);
    tsr_tokenizer_free(tok);
}

int main(void) {
    tsr_test_run("tokenizer_bad_table", test_bad_table);
    tsr_test_run("tokenizer_deep_nesting", test_deep_nesting);
    tsr_test_run("tokenizer_bad_configs", test_bad_configs);
    tsr_test_run("tokenizer_alloc_failpoints", test_alloc_failpoints);
    return tsr_test_finish();
}
