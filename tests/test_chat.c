/* Chat templates: the Jinja interpreter against jinja2 (our own small templates), every
 * official template revision against transformers' rendered prompts, model-directory
 * loading, OpenAI-style message parsing, and hostile templates that must fail cleanly. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../text/jinja.h"
#include "harness.h"

static cJSON *load_json(const char *path) {
    size_t len;
    char *text = (char *)tsr_test_read(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static tsr_status status_by_name(const char *name) {
    for (int s = 0; s < TSR_STATUS_COUNT; s++)
        if (name && !strcmp(tsr_status_name((tsr_status)s), name)) return (tsr_status)s;
    return TSR_ERR_INTERNAL;
}

static void report_diff(const char *what, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    fprintf(stderr, "%s: differs at byte %zu\n  got:  %.120s\n  want: %.120s\n", what, i,
            got + (i > 20 ? i - 20 : 0), want + (i > 20 ? i - 20 : 0));
}

/* ---- generic Jinja cases ----------------------------------------------------------------- */

static void test_jinja_cases(void) {
    cJSON *doc = load_json(tsr_test_fixture("chat/jinja_cases.json"));
    CHECK(doc != NULL);
    if (!doc) return;
    tsr__jinja_render_opts opts = {tsr__jinja_limits_default(),
        (int64_t)cJSON_GetObjectItem(doc, "now_unix")->valuedouble};
    int n = 0;
    for (const cJSON *c = cJSON_GetObjectItem(doc, "cases")->child; c; c = c->next, n++) {
        const char *name = jstr(c, "name"), *tpl = jstr(c, "template"), *want = jstr(c, "expected");
        tsr_error err = {0};
        tsr__jinja_template *t = NULL;
        char *out = NULL;
        size_t len = 0;
        tsr_status st = tsr__jinja_parse(tpl, strlen(tpl), &t, &err);
        if (st == TSR_OK) st = tsr__jinja_render(t, cJSON_GetObjectItem(c, "vars"), &opts, &out, &len, &err);
        if (want) {
            CHECK_MSG(st == TSR_OK, "%s: %s %s", name, tsr_status_name(st), err.message);
            if (st == TSR_OK && (len != strlen(want) || memcmp(out, want, len))) {
                CHECK_MSG(0, "%s renders differently", name);
                report_diff(name, out, want);
            }
        } else {
            tsr_status expect = status_by_name(jstr(c, "expect_status"));
            CHECK_MSG(st == expect, "%s: got %s (%s), expected %s", name, tsr_status_name(st),
                      err.message, tsr_status_name(expect));
            CHECK_MSG(strstr(err.message, "chat template") != NULL, "%s: message '%s'", name,
                      err.message);
        }
        tsr__free(out);
        tsr__jinja_free(t);
    }
    CHECK(n >= 60);
    cJSON_Delete(doc);
}

/* ---- official templates -------------------------------------------------------------------- */

/* Template text per the fixture's extraction rule; NULL (skip) when the source is absent. */
static char *fixture_template(const cJSON *fx) {
    const char *base = jstr(fx, "base"), *rel = jstr(fx, "path");
    const cJSON *ex = cJSON_GetObjectItem(fx, "extract");
    const char *kind = jstr(ex, "kind");
    char rel2[512];
    const char *path;
    if (!strcmp(base, "shared")) {
        path = tsr_test_shared(rel);
    } else {
        snprintf(rel2, sizeof rel2, "chat/fetched/%s", rel);
        path = tsr_test_fixture(rel2);
    }
    size_t len;
    char *text = path ? (char *)tsr_test_read(path, &len) : NULL;
    if (!text) return NULL;
    char *result = NULL;
    cJSON *j = NULL;
    if (!strcmp(kind, "json_key")) {
        j = cJSON_Parse(text);
        const char *s = jstr(j, jstr(ex, "key"));
        result = s ? strdup(s) : NULL;
    } else if (!strcmp(kind, "json_fragment")) {
        char *wrapped = malloc(len + 2);
        wrapped[0] = '{';
        memcpy(wrapped + 1, text, len + 1);
        j = cJSON_Parse(wrapped);
        free(wrapped);
        const char *s = jstr(j, jstr(ex, "key"));
        result = s ? strdup(s) : NULL;
    } else if (!strcmp(kind, "json_string")) {
        j = cJSON_Parse(text);
        result = cJSON_IsString(j) ? strdup(j->valuestring) : NULL;
    } else if (!strcmp(kind, "string_line")) {
        int want = cJSON_GetObjectItem(ex, "index")->valueint, seen = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            while (*line == ' ' || *line == '\t') line++;
            if (*line != '"') continue;
            if (seen++ != want) continue;
            size_t l = strlen(line);
            while (l && (line[l - 1] == ',' || line[l - 1] == ' ' || line[l - 1] == '\r')) line[--l] = 0;
            j = cJSON_Parse(line);
            result = cJSON_IsString(j) ? strdup(j->valuestring) : NULL;
            break;
        }
    }
    cJSON_Delete(j);
    free(text);
    return result;
}

/* A model directory holding only modeling_minicpmo.py (MiniCPM-o's TTS template). */
static tsr_chat_template *minicpmo_from_dir(const cJSON *fx, tsr_error *err) {
    char rel[512];
    snprintf(rel, sizeof rel, "chat/fetched/%s", jstr(fx, "path"));
    size_t len;
    char *src = (char *)tsr_test_read(tsr_test_fixture(rel), &len);
    if (!src) return NULL;
    char dir[] = "/tmp/tsr_chat_XXXXXX";
    tsr_chat_template *t = NULL;
    if (mkdtemp(dir)) {
        char path[600];
        snprintf(path, sizeof path, "%s/modeling_minicpmo.py", dir);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(src, 1, len, f);
            fclose(f);
            tsr_chat_template_params p = tsr_chat_template_params_default();
            p.eos_token = "<|im_end|>";
            CHECK_OK(tsr_chat_template_load(dir, &p, &t, err), err);
            remove(path);
        }
        rmdir(dir);
    }
    free(src);
    return t;
}

static int run_family_fixture(const char *file) {
    char rel[512];
    snprintf(rel, sizeof rel, "chat/%s", file);
    cJSON *fx = load_json(tsr_test_fixture(rel));
    CHECK_MSG(fx != NULL, "%s does not parse", file);
    if (!fx) return 0;
    tsr_error err = {0};
    tsr_chat_template *t = NULL;
    const char *kind = jstr(cJSON_GetObjectItem(fx, "extract"), "kind");
    const char *revision = jstr(fx, "revision"), *family = jstr(fx, "family");
    int is_refused = !strcmp(revision, "qwen2-vl-base");
    if (!strcmp(kind, "python_attr")) {
        t = minicpmo_from_dir(fx, &err);
        if (!t && err.status == TSR_OK) { /* the fetched source is not cached here */
            cJSON_Delete(fx);
            return 0;
        }
    } else {
        char *text = fixture_template(fx);
        if (!text) {
            cJSON_Delete(fx);
            return 0;
        }
        const cJSON *tok = cJSON_GetObjectItem(fx, "special_tokens");
        tsr_chat_template_params p = tsr_chat_template_params_default();
        p.bos_token = jstr(tok, "bos_token");
        p.eos_token = jstr(tok, "eos_token");
        p.unk_token = jstr(tok, "unk_token");
        p.pad_token = jstr(tok, "pad_token");
        tsr_status st = tsr_chat_template_from_string(text, strlen(text), &p, &t, &err);
        if (is_refused) {
            CHECK_MSG(st == TSR_ERR_UNSUPPORTED && strstr(err.message, "not a conversation"),
                      "%s: %s %s", file, tsr_status_name(st), err.message);
        } else {
            CHECK_MSG(st == TSR_OK, "%s: %s", file, err.message);
        }
        /* fingerprint as the generator computed it */
        char fp[32];
        tsr_chat_template *any = NULL;
        tsr_chat_template_params pu = tsr_chat_template_params_default();
        pu.allow_unknown = 1;
        if (!is_refused && tsr_chat_template_from_string(text, strlen(text), &pu, &any, &err) == TSR_OK) {
            snprintf(fp, sizeof fp, "%016llx", (unsigned long long)tsr_chat_template_fingerprint(any));
            CHECK_MSG(!strcmp(fp, jstr(fx, "fingerprint")), "%s fingerprint %s", file, fp);
        }
        tsr_chat_template_free(any);
        free(text);
    }
    if (t) {
        CHECK_MSG(!strcmp(tsr_chat_template_family(t), family), "%s family %s", file,
                  tsr_chat_template_family(t));
        CHECK_MSG(!strcmp(tsr_chat_template_revision(t), revision), "%s revision %s", file,
                  tsr_chat_template_revision(t));
    }
    int64_t now = (int64_t)cJSON_GetObjectItem(fx, "now_unix")->valuedouble;
    for (const cJSON *c = t ? cJSON_GetObjectItem(fx, "cases")->child : NULL; c; c = c->next) {
        const char *name = jstr(c, "name"), *want = jstr(c, "expected");
        char *mjson = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "messages"));
        tsr_chat_messages *msgs = NULL;
        CHECK_OK(tsr_chat_messages_parse_json(mjson, strlen(mjson), &msgs, &err), &err);
        free(mjson);
        tsr_chat_render_params rp = tsr_chat_render_params_default();
        rp.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        rp.now_unix = now;
        char *out = NULL;
        size_t len = 0;
        tsr_status st = tsr_chat_template_render(t, tsr_chat_messages_items(msgs),
                                                 tsr_chat_messages_count(msgs), &rp, &out, &len, &err);
        if (want) {
            CHECK_MSG(st == TSR_OK, "%s/%s: %s %s", file, name, tsr_status_name(st), err.message);
            if (st == TSR_OK && (len != strlen(want) || memcmp(out, want, len))) {
                CHECK_MSG(0, "%s/%s renders differently", file, name);
                report_diff(name, out, want);
            }
        } else {
            const char *es = jstr(c, "expect_status");
            tsr_status expect = es ? status_by_name(es) : TSR_ERR_INVALID_ARG;
            CHECK_MSG(st == expect, "%s/%s: got %s (%s), expected %s", file, name,
                      tsr_status_name(st), err.message, tsr_status_name(expect));
            CHECK(out == NULL);
        }
        tsr_chat_string_free(out);
        tsr_chat_messages_free(msgs);
    }
    tsr_chat_template_free(t);
    cJSON_Delete(fx);
    return 1;
}

static void test_official_templates(void) {
    DIR *d = opendir(tsr_test_fixture("chat"));
    CHECK(d != NULL);
    if (!d) return;
    int ran = 0, total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (!strstr(e->d_name, "--") || l < 5 || strcmp(e->d_name + l - 5, ".json")) continue;
        total++;
        if (run_family_fixture(e->d_name)) ran++;
        else printf("  (template for %s not available here)\n", e->d_name);
    }
    closedir(d);
    CHECK(total >= 9);
    if (ran == 0) tsr_test_skip("no official template text available (%s absent)", "TSR_SHARED");
}

/* ---- model directories ------------------------------------------------------------------------- */

static void test_load_dirs(void) {
    const char *qwen = tsr_test_shared("reference/checkpoints/Qwen--Qwen2-VL-2B-Instruct");
    if (!qwen) { tsr_test_skip("shared reference folder absent"); return; }
    tsr_error err = {0};
    tsr_chat_template *t = NULL;
    CHECK_OK(tsr_chat_template_load(qwen, NULL, &t, &err), &err);
    CHECK(!strcmp(tsr_chat_template_family(t), "qwen2_vl"));
    tsr_chat_part parts[] = {{TSR_CHAT_PART_IMAGE, NULL, NULL}, {TSR_CHAT_PART_TEXT, "Hi", NULL}};
    tsr_chat_message m = {"user", NULL, parts, 2};
    char *out = NULL;
    CHECK_OK(tsr_chat_template_render(t, &m, 1, NULL, &out, NULL, &err), &err);
    CHECK(out && strstr(out, "<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>"));
    tsr_chat_string_free(out);
    tsr_chat_part audio = {TSR_CHAT_PART_AUDIO, NULL, "wav"};
    tsr_chat_message ma = {"user", NULL, &audio, 1};
    CHECK(tsr_chat_template_render(t, &ma, 1, NULL, &out, NULL, &err) == TSR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "no audio") != NULL);
    tsr_chat_template_free(t);

    /* Mistral: bos/eos from tokenizer_config.json + special_tokens_map.json */
    const char *mis = tsr_test_shared("reference/checkpoints/mistralai--Mistral-Small-3.1-24B-Instruct-2503");
    t = NULL;
    CHECK_OK(tsr_chat_template_load(mis, NULL, &t, &err), &err);
    CHECK(!strcmp(tsr_chat_template_revision(t), "mistral-small-3.1-2503"));
    tsr_chat_message conv[] = {{"system", "S", NULL, 0}, {"user", "U", NULL, 0}, {"assistant", "A", NULL, 0}};
    CHECK_OK(tsr_chat_template_render(t, conv, 3, NULL, &out, NULL, &err), &err);
    CHECK(out && !strcmp(out, "<s>[SYSTEM_PROMPT]S[/SYSTEM_PROMPT][INST]U[/INST]A</s>"));
    tsr_chat_string_free(out);
    tsr_chat_template_free(t);

    /* the base Qwen2-VL template is refused; a directory without a template too */
    t = NULL;
    CHECK(tsr_chat_template_load(tsr_test_shared("reference/checkpoints/Qwen--Qwen2-VL-2B"), NULL,
                                 &t, &err) == TSR_ERR_UNSUPPORTED && t == NULL);
    CHECK(tsr_chat_template_load(tsr_test_shared("reference/checkpoints/llava-hf--llava-v1.6-vicuna-7b-hf"),
                                 NULL, &t, &err) == TSR_ERR_UNSUPPORTED && t == NULL);
    CHECK(tsr_chat_template_load("/nonexistent/dir", NULL, &t, &err) == TSR_ERR_UNSUPPORTED);
}

/* ---- unknown and hostile templates ------------------------------------------------------------- */

static tsr_status render_text(const char *tpl, int allow_unknown, char **out, tsr_error *err) {
    tsr_chat_template_params p = tsr_chat_template_params_default();
    p.allow_unknown = allow_unknown;
    tsr_chat_template *t = NULL;
    *out = NULL;
    tsr_status st = tsr_chat_template_from_string(tpl, strlen(tpl), &p, &t, err);
    if (st != TSR_OK) return st;
    tsr_chat_message m = {"user", "hello", NULL, 0};
    tsr_chat_render_params rp = tsr_chat_render_params_default();
    rp.max_output_bytes = 1 << 20;
    st = tsr_chat_template_render(t, &m, 1, &rp, out, NULL, err);
    tsr_chat_template_free(t);
    return st;
}

static void test_unknown_template(void) {
    const char *tpl = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
    tsr_error err = {0};
    char *out;
    CHECK(render_text(tpl, 0, &out, &err) == TSR_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "allow_unknown") != NULL);
    CHECK_OK(render_text(tpl, 1, &out, &err), &err);
    CHECK(out && !strcmp(out, "<user>hello"));
    tsr_chat_string_free(out);
}

static void test_hostile_templates(void) {
    static const struct { const char *tpl; tsr_status want; } cases[] = {
        {"{% for i in range(100000000) %}x{% endfor %}", TSR_ERR_LIMIT},
        {"{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", TSR_ERR_LIMIT},
        {"{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", TSR_ERR_LIMIT},
        {"{% set s = namespace(v='ab') %}{% for i in range(40) %}{% set s.v = s.v + s.v %}{% endfor %}", TSR_ERR_LIMIT},
        {"{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", TSR_ERR_LIMIT},
        {"{{ 9223372036854775807 + 1 }}", TSR_ERR_LIMIT},
        {"{{ 2 ** 64 }}", TSR_ERR_LIMIT},
        {"{{ 'x' * 100000000 }}", TSR_ERR_LIMIT},
        {"{% if x %}", TSR_ERR_FORMAT},
        {"{% for %}{% endfor %}", TSR_ERR_FORMAT},
        {"{{ }}", TSR_ERR_FORMAT},
        {"{{ x | nope }}", TSR_ERR_UNSUPPORTED},
        {"{% raw %}x{% endraw %}", TSR_ERR_UNSUPPORTED},
        {"{% extends 'a' %}", TSR_ERR_UNSUPPORTED},
        {"{{ 'abc'.format(1) }}", TSR_ERR_UNSUPPORTED},
        {"{{ messages.append(1) }}", TSR_ERR_UNSUPPORTED},
        {"{{ u.__class__ }}", TSR_ERR_INVALID_ARG},
        {"{{ raise_exception('no') }}", TSR_ERR_INVALID_ARG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tsr_error err = {0};
        char *out;
        tsr_status st = render_text(cases[i].tpl, 1, &out, &err);
        CHECK_MSG(st == cases[i].want, "case %zu: %s (%s), want %s", i, tsr_status_name(st),
                  err.message, tsr_status_name(cases[i].want));
        CHECK(out == NULL);
        tsr_chat_string_free(out);
    }
    /* deep nesting of expressions and of blocks */
    size_t n = 5000;
    char *deep = malloc(4 * n + 64), *p = deep;
    p += sprintf(p, "{{ ");
    for (size_t i = 0; i < n; i++) *p++ = '(';
    *p++ = '1';
    for (size_t i = 0; i < n; i++) *p++ = ')';
    strcpy(p, " }}");
    tsr_error err = {0};
    char *out;
    CHECK(render_text(deep, 1, &out, &err) == TSR_ERR_LIMIT);
    p = deep;
    for (size_t i = 0; i < 800; i++) p += sprintf(p, "{%%if 1%%}");
    *p = 0;
    CHECK(render_text(deep, 1, &out, &err) == TSR_ERR_LIMIT);
    free(deep);
    /* every prefix of a real-looking template fails cleanly or renders */
    const char *tpl = "{%- for m in messages -%}{{ '<|' ~ m['role'] ~ '|>' }}{% if m.content is string %}"
                      "{{ m.content | trim }}{% endif %}{#c#}{%- endfor %}";
    for (size_t l = 0; l <= strlen(tpl); l++) {
        char *pre = strndup(tpl, l);
        tsr_status st = render_text(pre, 1, &out, &err);
        CHECK(st == TSR_OK || st == TSR_ERR_FORMAT || st == TSR_ERR_UNSUPPORTED);
        tsr_chat_string_free(out);
        free(pre);
    }
}

/* ---- OpenAI-style messages --------------------------------------------------------------------- */

static void test_messages_json(void) {
    const char *json =
        "{\"model\": \"x\", \"messages\": ["
        "{\"role\": \"system\", \"content\": \"Be brief.\"},"
        "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Look\"},"
        " {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,AAAA\"}},"
        " {\"type\": \"input_audio\", \"input_audio\": {\"data\": \"UklG\", \"format\": \"wav\"}}]},"
        "{\"role\": \"assistant\", \"content\": null}]}";
    tsr_error err = {0};
    tsr_chat_messages *m = NULL;
    CHECK_OK(tsr_chat_messages_parse_json(json, strlen(json), &m, &err), &err);
    CHECK(tsr_chat_messages_count(m) == 3);
    const tsr_chat_message *it = tsr_chat_messages_items(m);
    if (it && tsr_chat_messages_count(m) == 3) {
        CHECK(!strcmp(it[0].content, "Be brief.") && it[0].parts == NULL);
        CHECK(it[1].n_parts == 3 && it[1].parts[1].type == TSR_CHAT_PART_IMAGE);
        CHECK(!strcmp(it[1].parts[1].text, "data:image/png;base64,AAAA"));
        CHECK(it[1].parts[2].type == TSR_CHAT_PART_AUDIO && !strcmp(it[1].parts[2].format, "wav"));
        CHECK(it[2].content == NULL && it[2].parts == NULL);
    }
    tsr_chat_messages_free(m);
    static const struct { const char *json; tsr_status want; const char *path; } bad[] = {
        {"", TSR_ERR_FORMAT, "JSON"},
        {"{\"messages\": 3}", TSR_ERR_FORMAT, "array"},
        {"[{\"content\": \"x\"}]", TSR_ERR_FORMAT, "messages[0]"},
        {"[{\"role\": \"user\", \"content\": 5}]", TSR_ERR_FORMAT, "messages[0].content"},
        {"[{\"role\": \"user\", \"content\": [{\"type\": \"video\"}]}]", TSR_ERR_UNSUPPORTED, "messages[0].content[0].type"},
        {"[{\"role\": \"user\"}, {\"role\": \"user\", \"content\": [{\"text\": \"x\"}]}]", TSR_ERR_FORMAT, "messages[1].content[0]"},
        {"[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]", TSR_ERR_FORMAT, "image_url"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m = NULL;
        tsr_status st = tsr_chat_messages_parse_json(bad[i].json, strlen(bad[i].json), &m, &err);
        CHECK_MSG(st == bad[i].want && m == NULL && strstr(err.message, bad[i].path),
                  "bad[%zu]: %s %s", i, tsr_status_name(st), err.message);
    }
    tsr_chat_messages_free(NULL);
    tsr_chat_template_free(NULL);
    tsr_chat_string_free(NULL);
}

/* ---- allocation failures --------------------------------------------------------------------- */

static void test_alloc_failures(void) {
    const char *tpl = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
                      "{{ m.role | upper }}:{{ m.content | trim }}{{ [1, 2] | tojson }}{% endfor %}{{ ns.n }}";
    tsr_error err = {0};
    char *out = NULL;
    tsr_status st = render_text(tpl, 1, &out, &err);
    CHECK_OK(st, &err);
    tsr_chat_string_free(out);
    tsr__alloc_failpoint(0);
    int saw_ok = 0;
    for (long n = 1; n < 2000 && !saw_ok; n++) {
        tsr__alloc_failpoint(n);
        st = render_text(tpl, 1, &out, &err);
        tsr__alloc_failpoint(0);
        CHECK_MSG(st == TSR_OK || st == TSR_ERR_OOM, "failpoint %ld: %s %s", n, tsr_status_name(st),
                  err.message);
        if (st == TSR_OK) { saw_ok = 1; tsr_chat_string_free(out); }
    }
    CHECK(saw_ok);
}

int main(void) {
    setenv("TZ", "UTC", 1);
    tzset();
    tsr_test_run("jinja_cases", test_jinja_cases);
    tsr_test_run("official_templates", test_official_templates);
    tsr_test_run("load_dirs", test_load_dirs);
    tsr_test_run("unknown_template", test_unknown_template);
    tsr_test_run("hostile_templates", test_hostile_templates);
    tsr_test_run("messages_json", test_messages_json);
#ifdef TSR_ALLOC_FAILPOINTS
    tsr_test_run("alloc_failures", test_alloc_failures);
#else
    (void)test_alloc_failures;
#endif
    return tsr_test_finish();
}
