/* The processor as a user calls it, end to end, against transformers (fixtures from
 * tools/refgen/gen_pipeline.py, tests/fixtures/pipeline/<family>/): a model directory plus the
 * family's official chat template, chat cases through tsr_processor_run_chat and raw-prompt
 * cases through tsr_processor_run_prompt, media given as encoded file bytes. Every tensor HF
 * returned must come out under the same name with the same dtype and shape (nothing squeezed)
 * and the same values: integers exactly, pixels within 1e-6, audio features within 1e-4.
 * A few cases per family also go through `tessera preprocess` ($TSR_CLI). Official templates
 * are not in the repository: they are read from $TSR_SHARED or the git-ignored cache
 * tests/fixtures/chat/fetched, and the chat cases of a family are skipped when absent. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

#define MAX_MEDIA 16

static const char *const FAMILIES[] = {"qwen2_vl", "qwen2_5_vl", "llava_next",
                                       "mllama",   "minicpmo",   "mistral3"};

static char g_tmp[] = "/tmp/tsr_pipeline_XXXXXX";

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItem(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *load_json(const char *path) {
    size_t len;
    char *text = (char *)tsr_test_read(path, &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

static int write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

/* Copies the regular files of src into dst (created), except `skip`. */
static int copy_dir(const char *src, const char *dst, const char *skip) {
    if (mkdir(dst, 0700) != 0) return 0;
    DIR *d = opendir(src);
    if (!d) return 0;
    int ok = 1;
    for (struct dirent *e; ok && (e = readdir(d));) {
        if (e->d_name[0] == '.' || (skip && !strcmp(e->d_name, skip))) continue;
        char from[1024], to[1024];
        snprintf(from, sizeof from, "%s/%s", src, e->d_name);
        snprintf(to, sizeof to, "%s/%s", dst, e->d_name);
        size_t len;
        uint8_t *data = tsr_test_read(from, &len);
        ok = data && write_file(to, data, len);
        free(data);
    }
    closedir(d);
    return ok;
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
    rmdir(dir);
}

/* ---- the official template ------------------------------------------------------------- */

/* The template source file named by the fixture (shared checkout or fetched cache), or NULL. */
static char *template_source(const cJSON *spec, size_t *len) {
    const char *base = jstr(spec, "base"), *rel = jstr(spec, "path");
    if (!base || !rel) return NULL;
    char rel2[512];
    const char *path;
    if (!strcmp(base, "shared")) {
        path = tsr_test_shared(rel);
    } else {
        snprintf(rel2, sizeof rel2, "chat/fetched/%s", rel);
        path = tsr_test_fixture(rel2);
    }
    return path ? (char *)tsr_test_read(path, len) : NULL;
}

/* Template text by the fixture's extraction rule (as tests/test_chat.c reads it). */
static char *extract_template(const cJSON *spec, char *text, size_t len) {
    const cJSON *ex = cJSON_GetObjectItem(spec, "extract");
    const char *kind = jstr(ex, "kind");
    char *result = NULL;
    cJSON *j = NULL;
    if (!kind) return NULL;
    if (!strcmp(kind, "json_key")) {
        j = cJSON_ParseWithLength(text, len);
        const char *s = jstr(j, jstr(ex, "key"));
        result = s ? strdup(s) : NULL;
    } else if (!strcmp(kind, "json_fragment")) {
        char *wrapped = malloc(len + 2);
        if (wrapped) {
            wrapped[0] = '{';
            memcpy(wrapped + 1, text, len);
            wrapped[len + 1] = 0;
            j = cJSON_Parse(wrapped);
            free(wrapped);
        }
        const char *s = jstr(j, jstr(ex, "key"));
        result = s ? strdup(s) : NULL;
    } else if (!strcmp(kind, "json_string")) {
        j = cJSON_ParseWithLength(text, len);
        result = cJSON_IsString(j) ? strdup(j->valuestring) : NULL;
    } else if (!strcmp(kind, "string_line")) {
        int want = cJSON_GetObjectItem(ex, "index")->valueint, seen = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            while (*line == ' ' || *line == '\t') line++;
            if (*line != '"' || seen++ != want) continue;
            size_t l = strlen(line);
            while (l && (line[l - 1] == ',' || line[l - 1] == ' ' || line[l - 1] == '\r'))
                line[--l] = 0;
            j = cJSON_Parse(line);
            result = cJSON_IsString(j) ? strdup(j->valuestring) : NULL;
            break;
        }
    }
    cJSON_Delete(j);
    return result;
}

/* Writes the family's template into dir the way a hub checkout holds it: chat_template.jinja,
 * or MiniCPM-o's modeling_minicpmo.py. Returns 0 when the source is absent here. */
static int install_template(const cJSON *spec, const char *dir) {
    size_t len;
    char *src = template_source(spec, &len);
    if (!src) return 0;
    char path[1024];
    int ok;
    if (!strcmp(jstr(cJSON_GetObjectItem(spec, "extract"), "kind"), "python_attr")) {
        snprintf(path, sizeof path, "%s/modeling_minicpmo.py", dir);
        ok = write_file(path, src, len);
    } else {
        char *text = extract_template(spec, src, len);
        snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
        ok = text && write_file(path, text, strlen(text));
        free(text);
    }
    free(src);
    CHECK_MSG(ok, "cannot install the template into %s", dir);
    return ok;
}

/* ---- comparison ------------------------------------------------------------------------ */

static double value_at(const tsr_tensor *t, int64_t i) {
    switch (t->dtype) {
    case TSR_DTYPE_U8: return ((const uint8_t *)t->data)[i];
    case TSR_DTYPE_I32: return ((const int32_t *)t->data)[i];
    case TSR_DTYPE_I64: return (double)((const int64_t *)t->data)[i];
    case TSR_DTYPE_F32: return ((const float *)t->data)[i];
    default: return NAN;
    }
}

typedef struct diffs {
    double pixel, audio;
} diffs;

/* Every tensor of the HF file equals the one in got (name, dtype, shape, values), and got
 * has no others. */
static void compare_outputs(const char *ctx, const tsr_tensor_list *got, const char *want_path,
                            diffs *d) {
    tsr_error err = {0};
    tsr_safetensors *want = NULL;
    CHECK_OK(tsr_test_open_safetensors(want_path, &want, &err), &err);
    if (!want) return;
    int64_t n_want = tsr_safetensors_count(want);
    CHECK_MSG(tsr_tensor_list_count(got) == n_want, "%s: %lld tensors, HF has %lld", ctx,
              (long long)tsr_tensor_list_count(got), (long long)n_want);
    for (int64_t i = 0; i < tsr_tensor_list_count(got); i++) {
        const char *name = tsr_tensor_list_name(got, i);
        tsr_tensor w;
        tsr_error e2 = {0};
        CHECK_MSG(tsr_safetensors_get(want, name, &w, &e2) == TSR_OK,
                  "%s: Tessera returns '%s', HF does not", ctx, name);
    }
    for (int64_t i = 0; i < n_want; i++) {
        const char *name = tsr_safetensors_name(want, i);
        tsr_tensor w;
        CHECK_OK(tsr_safetensors_get(want, name, &w, &err), &err);
        const tsr_tensor *g = tsr_tensor_list_get(got, name);
        CHECK_MSG(g != NULL, "%s: output '%s' missing", ctx, name);
        if (!g) continue;
        int same = g->dtype == w.dtype && g->ndim == w.ndim;
        for (int k = 0; same && k < g->ndim; k++) same = g->shape[k] == w.shape[k];
        CHECK_MSG(same, "%s: '%s' is %s rank %d [%lld, ...], HF %s rank %d [%lld, ...]", ctx,
                  name, tsr_dtype_name(g->dtype), g->ndim, (long long)(g->ndim ? g->shape[0] : 0),
                  tsr_dtype_name(w.dtype), w.ndim, (long long)(w.ndim ? w.shape[0] : 0));
        if (!same) continue;
        int audio = strstr(name, "audio") != NULL;
        double tol = w.dtype == TSR_DTYPE_F32 ? (audio ? 1e-4 : 1e-6) : 0, max_diff = 0;
        int64_t n = tsr_tensor_numel(g), bad = 0, first = -1;
        for (int64_t k = 0; k < n; k++) {
            double diff = fabs(value_at(g, k) - value_at(&w, k));
            if (!(diff <= tol) && bad++ == 0) first = k;
            if (diff > max_diff || diff != diff) max_diff = diff;
        }
        CHECK_MSG(bad == 0, "%s: '%s' has %lld of %lld values off (max abs diff %g; first at %lld: "
                  "%g vs HF %g)", ctx, name, (long long)bad, (long long)n, max_diff,
                  (long long)first, first >= 0 ? value_at(g, first) : 0.0,
                  first >= 0 ? value_at(&w, first) : 0.0);
        if (w.dtype == TSR_DTYPE_F32) {
            double *slot = audio ? &d->audio : &d->pixel;
            if (max_diff > *slot) *slot = max_diff;
        }
    }
    tsr_test_close_safetensors(want);
}

static void check_ids_json(const char *ctx, const tsr_tensor_list *got, const cJSON *c) {
    const cJSON *want = cJSON_GetObjectItem(c, "input_ids");
    const tsr_tensor *ids = tsr_tensor_list_get(got, "input_ids");
    if (!ids || ids->dtype != TSR_DTYPE_I64) return; /* reported by compare_outputs */
    int64_t n = tsr_tensor_numel(ids);
    int same = cJSON_IsNumber(want) ? n == (int64_t)want->valuedouble
                                    : n == cJSON_GetArraySize(want);
    int64_t k = 0;
    for (const cJSON *v = cJSON_IsArray(want) ? want->child : NULL; same && v; v = v->next, k++)
        same = ((const int64_t *)ids->data)[k] == (int64_t)v->valuedouble;
    CHECK_MSG(same, "%s: input_ids differ from the case's list", ctx);
}

/* ---- cases ----------------------------------------------------------------------------- */

typedef struct family_run {
    const char *family;
    char fixture_dir[512]; /* tests/fixtures/pipeline/<family> */
    char chat_dir[600];    /* temp model dir with the template; "" when absent */
    tsr_processor *raw, *chat;
    int n_chat, n_raw, n_cli, n_known, chat_skipped;
    diffs d;
} family_run;

typedef struct media_files {
    tsr_media items[MAX_MEDIA];
    uint8_t *bytes[MAX_MEDIA];
    char paths[MAX_MEDIA][600];
    size_t n;
} media_files;

static int read_media(const char *ctx, const cJSON *c, media_files *m) {
    memset(m, 0, sizeof *m);
    const cJSON *list = cJSON_GetObjectItem(c, "media");
    for (const cJSON *it = list ? list->child : NULL; it; it = it->next) {
        if (m->n == MAX_MEDIA) return 0;
        char rel[300];
        snprintf(rel, sizeof rel, "pipeline/media/%s", jstr(it, "file"));
        snprintf(m->paths[m->n], sizeof m->paths[0], "%s", tsr_test_fixture(rel));
        m->bytes[m->n] = tsr_test_read(m->paths[m->n], &m->items[m->n].len);
        CHECK_MSG(m->bytes[m->n] != NULL, "%s: cannot read %s", ctx, m->paths[m->n]);
        if (!m->bytes[m->n]) return 0;
        m->items[m->n].kind = strcmp(jstr(it, "kind"), "audio") ? TSR_MEDIA_IMAGE : TSR_MEDIA_AUDIO;
        m->items[m->n].data = m->bytes[m->n];
        m->n++;
    }
    return 1;
}

static void free_media(media_files *m) {
    for (size_t i = 0; i < m->n; i++) free(m->bytes[i]);
}

/* Runs `tessera preprocess` for the case; compares the file it writes. */
static void run_cli(family_run *f, const cJSON *c, const media_files *m, const char *ctx,
                    const char *want_path) {
    const char *cli = getenv("TSR_CLI");
    if (!cli) return;
    int chat = !strcmp(jstr(c, "kind"), "chat");
    char out_path[700], msg_path[700], err_path[700];
    snprintf(out_path, sizeof out_path, "%s/cli_out.safetensors", g_tmp);
    snprintf(msg_path, sizeof msg_path, "%s/messages.json", g_tmp);
    snprintf(err_path, sizeof err_path, "%s/cli_stderr.txt", g_tmp);
    const char *argv[2 * MAX_MEDIA + 16];
    int a = 0;
    argv[a++] = cli;
    argv[a++] = "preprocess";
    argv[a++] = "--model";
    argv[a++] = chat ? f->chat_dir : f->fixture_dir; /* raw: the fixture dir has no template */
    char model_dir[600];
    if (!chat) {
        snprintf(model_dir, sizeof model_dir, "%s/model", f->fixture_dir);
        argv[a - 1] = model_dir;
    }
    for (size_t i = 0; i < m->n; i++) {
        argv[a++] = m->items[i].kind == TSR_MEDIA_AUDIO ? "--audio" : "--image";
        argv[a++] = m->paths[i];
    }
    /* -p TEXT is one user turn holding the media, then the text: use it when the case is
     * exactly that, --messages otherwise. */
    const cJSON *msgs = cJSON_GetObjectItem(c, "messages");
    const cJSON *last = NULL;
    int one_turn = chat && cJSON_GetArraySize(msgs) == 1 &&
                   !strcmp(jstr(msgs->child, "role"), "user");
    if (one_turn) {
        const cJSON *parts = cJSON_GetObjectItem(msgs->child, "content");
        int n_parts = cJSON_GetArraySize(parts), k = 0;
        for (const cJSON *p = parts ? parts->child : NULL; one_turn && p; p = p->next, k++) {
            int is_text = !strcmp(jstr(p, "type"), "text");
            one_turn = is_text == (k == n_parts - 1);
            if (is_text) last = p;
        }
        one_turn = one_turn && last;
    }
    if (one_turn) {
        argv[a++] = "-p";
        argv[a++] = jstr(last, "text");
    } else if (chat) {
        char *text = cJSON_PrintUnformatted(msgs);
        CHECK(text && write_file(msg_path, text, strlen(text)));
        cJSON_free(text);
        argv[a++] = "--messages";
        argv[a++] = msg_path;
    } else {
        argv[a++] = "--no-template";
        argv[a++] = "-p";
        argv[a++] = jstr(c, "prompt");
        if (cJSON_IsFalse(cJSON_GetObjectItem(c, "add_special_tokens"))) argv[a++] = "--no-special";
    }
    argv[a++] = "--out";
    argv[a++] = out_path;
    argv[a] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int status = -1;
    remove(out_path);
    if (posix_spawn(&pid, cli, &fa, NULL, (char *const *)argv, environ) == 0)
        waitpid(pid, &status, 0);
    posix_spawn_file_actions_destroy(&fa);
    int ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        size_t len;
        char *e = (char *)tsr_test_read(err_path, &len);
        CHECK_MSG(ok, "%s: tessera preprocess failed (status %d): %.*s", ctx, status,
                  e ? (int)len : 0, e ? e : "");
        free(e);
        return;
    }
    tsr_error err = {0};
    tsr_safetensors *st = NULL;
    CHECK_OK(tsr_safetensors_open_file(out_path, &st, &err), &err);
    if (!st) return;
    /* The written file as a tensor list, then the same comparison as the library's. */
    tsr_tensor_list *list = NULL;
    CHECK_OK(tsr_tensor_list_new(&list, &err), &err);
    for (int64_t i = 0; list && i < tsr_safetensors_count(st); i++) {
        tsr_tensor t, copy;
        const char *name = tsr_safetensors_name(st, i);
        CHECK_OK(tsr_safetensors_get(st, name, &t, &err), &err);
        CHECK_OK(tsr_tensor_alloc(&copy, t.dtype, t.ndim, t.shape, &err), &err);
        memcpy(copy.data, t.data, (size_t)tsr_tensor_numel(&t) * tsr_dtype_size(t.dtype));
        CHECK_OK(tsr_tensor_list_add(list, name, &copy, &err), &err);
        tsr_tensor_free(&copy);
    }
    char cctx[600];
    snprintf(cctx, sizeof cctx, "%s (tessera preprocess)", ctx);
    diffs d = {0, 0};
    compare_outputs(cctx, list, want_path, &d);
    tsr_tensor_list_free(list);
    tsr_safetensors_close(st);
    f->n_cli++;
}

static void run_case(family_run *f, const cJSON *c) {
    const char *name = jstr(c, "name"), *kind = jstr(c, "kind");
    char ctx[300], want_path[800];
    snprintf(ctx, sizeof ctx, "%s/%s", f->family, name);
    snprintf(want_path, sizeof want_path, "%s/%s", f->fixture_dir, jstr(c, "outputs"));
    int chat = !strcmp(kind, "chat");
    if (chat && !f->chat) return;
    media_files m;
    if (!read_media(ctx, c, &m)) {
        free_media(&m);
        return;
    }
    tsr_error err = {0};
    tsr_tensor_list *out = NULL;
    tsr_status st;
    if (chat) {
        char *text = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "messages"));
        tsr_chat_messages *msgs = NULL;
        CHECK_OK(tsr_chat_messages_parse_json(text, strlen(text), &msgs, &err), &err);
        st = tsr_processor_run_chat(f->chat, tsr_chat_messages_items(msgs),
                                    tsr_chat_messages_count(msgs), m.items, m.n, &out, &err);
        tsr_chat_messages_free(msgs);
        cJSON_free(text);
        f->n_chat++;
    } else {
        st = tsr_processor_run_prompt(f->raw, jstr(c, "prompt"),
                                      !cJSON_IsFalse(cJSON_GetObjectItem(c, "add_special_tokens")),
                                      m.items, m.n, &out, &err);
        f->n_raw++;
    }
    CHECK_MSG(st == TSR_OK, "%s: %s: %s", ctx, tsr_status_name(st), err.message);
    const char *known = jstr(c, "known_difference");
    if (known) { /* run (no crash, no leak) but not compared; listed in the summary */
        printf("%s: known difference, not compared: %s\n", ctx, known);
        f->n_known++;
    } else if (out) {
        compare_outputs(ctx, out, want_path, &f->d);
        check_ids_json(ctx, out, c);
    }
    tsr_tensor_list_free(out);
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "cli"))) run_cli(f, c, &m, ctx, want_path);
    free_media(&m);
}

static void run_family(const char *family) {
    family_run f;
    memset(&f, 0, sizeof f);
    f.family = family;
    char rel[256];
    snprintf(rel, sizeof rel, "pipeline/%s", family);
    snprintf(f.fixture_dir, sizeof f.fixture_dir, "%s", tsr_test_fixture(rel));
    snprintf(rel, sizeof rel, "pipeline/%s/cases.json", family);
    cJSON *cases = load_json(tsr_test_fixture(rel));
    CHECK_MSG(cases != NULL, "%s: no cases.json", family);
    if (!cases) return;
    CHECK(!strcmp(jstr(cases, "model_type"), family) || !strcmp(family, "qwen2_5_vl"));

    char model[600];
    snprintf(model, sizeof model, "%s/model", f.fixture_dir);
    tsr_error err = {0};
    CHECK_OK(tsr_processor_load(model, NULL, &f.raw, &err), &err);
    CHECK(f.raw && !strcmp(tsr_processor_model_type(f.raw), jstr(cases, "model_type")));
    /* The chat processor: the fixture model dir plus the official template. */
    snprintf(f.chat_dir, sizeof f.chat_dir, "%s/%s", g_tmp, family);
    CHECK(copy_dir(model, f.chat_dir, NULL));
    const cJSON *spec = cJSON_GetObjectItem(cases, "template");
    if (cJSON_IsObject(spec) && install_template(spec, f.chat_dir)) {
        CHECK_OK(tsr_processor_load(f.chat_dir, NULL, &f.chat, &err), &err);
    } else {
        f.chat_skipped = 1;
        printf("%s: chat cases skipped: template %s (%s) not available here\n", family,
               jstr(spec, "revision"), jstr(spec, "path"));
    }
    const cJSON *list = cJSON_GetObjectItem(cases, "cases");
    for (const cJSON *c = list ? list->child : NULL; f.raw && c; c = c->next) run_case(&f, c);
    printf("%s: %d chat + %d raw cases (%d through tessera preprocess, %d known differences), "
           "max abs diff pixels %g, audio %g\n", family, f.n_chat, f.n_raw, f.n_cli, f.n_known,
           f.d.pixel, f.d.audio);
    CHECK(f.n_raw >= 10);
    CHECK(f.chat_skipped || f.n_chat + f.n_raw >= 25);
    tsr_processor_free(f.raw);
    tsr_processor_free(f.chat);
    remove_dir(f.chat_dir);
    cJSON_Delete(cases);
}

static void test_families(void) {
    for (size_t i = 0; i < sizeof FAMILIES / sizeof FAMILIES[0]; i++) run_family(FAMILIES[i]);
}

/* ---- bad input at the pipeline level ---------------------------------------------------- */

static void expect(const char *what, tsr_status got, tsr_status want, const tsr_error *err,
                   const char *needle) {
    CHECK_MSG(got == want && strstr(err->message, needle) != NULL,
              "%s: %s '%s' (expected %s with '%s')", what, tsr_status_name(got), err->message,
              tsr_status_name(want), needle);
}

/* A copy of a fixture model dir with one file replaced (content NULL: removed). */
static void variant(const char *family, const char *dir, const char *file, const char *content) {
    char src[600], rel[128], path[800];
    snprintf(rel, sizeof rel, "pipeline/%s/model", family);
    snprintf(src, sizeof src, "%s", tsr_test_fixture(rel));
    CHECK(copy_dir(src, dir, content ? NULL : file));
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (content) CHECK(write_file(path, content, strlen(content)));
}

static void test_bad_input(void) {
    tsr_error err = {0};
    tsr_processor *p = NULL;
    tsr_tensor_list *out = NULL;
    char rel[128];
    snprintf(rel, sizeof rel, "pipeline/qwen2_vl/model");
    CHECK_OK(tsr_processor_load(tsr_test_fixture(rel), NULL, &p, &err), &err);
    if (!p) return;
    size_t len = 0;
    uint8_t *png = tsr_test_read(tsr_test_fixture("pipeline/media/rgb_64x48.png"), &len);
    uint8_t *wav = NULL;
    size_t wav_len = 0;
    wav = tsr_test_read(tsr_test_fixture("pipeline/media/a_0_1s.wav"), &wav_len);
    CHECK(png && wav);
    tsr_media img = {TSR_MEDIA_IMAGE, png, len, NULL, NULL};
    tsr_media two[2] = {img, img};
    const char *V = "<|vision_start|><|image_pad|><|vision_end|>";
    char prompt[256];

    snprintf(prompt, sizeof prompt, "%s and %s", V, V);
    expect("more placeholders than images", tsr_processor_run_prompt(p, prompt, 1, &img, 1, &out, &err),
           TSR_ERR_INVALID_ARG, &err, "2 image and 0 audio placeholders but 1 images");
    expect("fewer placeholders than images", tsr_processor_run_prompt(p, V, 1, two, 2, &out, &err),
           TSR_ERR_INVALID_ARG, &err, "1 image and 0 audio placeholders but 2 images");
    expect("no placeholder, one image", tsr_processor_run_prompt(p, "text", 1, &img, 1, &out, &err),
           TSR_ERR_INVALID_ARG, &err, "0 image and 0 audio placeholders but 1 images");
    tsr_media aud = {TSR_MEDIA_AUDIO, wav, wav_len, NULL, NULL};
    expect("audio for a vision-only family", tsr_processor_run_prompt(p, "x", 1, &aud, 1, &out, &err),
           TSR_ERR_UNSUPPORTED, &err, "qwen2_vl models take no audio");
    tsr_media half = {TSR_MEDIA_IMAGE, png, len / 2, NULL, NULL};
    expect("truncated image", tsr_processor_run_prompt(p, V, 1, &half, 1, &out, &err),
           TSR_ERR_FORMAT, &err, "media[0]: ");
    uint8_t junk[64];
    memset(junk, 0x5a, sizeof junk);
    tsr_media bad = {TSR_MEDIA_IMAGE, junk, sizeof junk, NULL, NULL};
    tsr_status st = tsr_processor_run_prompt(p, V, 1, &bad, 1, &out, &err);
    CHECK_MSG((st == TSR_ERR_FORMAT || st == TSR_ERR_UNSUPPORTED) && strstr(err.message, "media[0]"),
              "unknown image bytes: %s %s", tsr_status_name(st), err.message);
    tsr_chat_message msg = {"user", "hi", NULL, 0};
    expect("chat without a template", tsr_processor_run_chat(p, &msg, 1, NULL, 0, &out, &err),
           TSR_ERR_UNSUPPORTED, &err, "no usable chat template");
    CHECK(out == NULL);
    tsr_processor_free(p);

    /* A MiniCPM-o prompt with audio placeholders but images given, and the reverse. */
    CHECK_OK(tsr_processor_load(tsr_test_fixture("pipeline/minicpmo/model"), NULL, &p, &err), &err);
    if (p) {
        expect("audio placeholder, image given",
               tsr_processor_run_prompt(p, "(<audio>./</audio>)", 1, &img, 1, &out, &err),
               TSR_ERR_INVALID_ARG, &err, "0 image and 1 audio placeholders but 1 images");
        expect("image placeholder, audio given",
               tsr_processor_run_prompt(p, "(<image>./</image>)", 1, &aud, 1, &out, &err),
               TSR_ERR_INVALID_ARG, &err, "1 image and 0 audio placeholders but 0 images and 1");
        tsr_media junk_audio = {TSR_MEDIA_AUDIO, junk, sizeof junk, NULL, NULL};
        st = tsr_processor_run_prompt(p, "(<audio>./</audio>)", 1, &junk_audio, 1, &out, &err);
        CHECK_MSG(st != TSR_OK && strstr(err.message, "media[0]"), "corrupt audio: %s %s",
                  tsr_status_name(st), err.message);
        tsr_processor_free(p);
    }

    /* Broken model directories. */
    char dir[700];
    snprintf(dir, sizeof dir, "%s/bad_type", g_tmp);
    variant("qwen2_vl", dir, "config.json", "{\"model_type\": \"bert\"}");
    expect("unknown model_type", tsr_processor_load(dir, NULL, &p, &err), TSR_ERR_UNSUPPORTED, &err,
           "model_type \"bert\" has no Tessera processor");
    CHECK(p == NULL);
    remove_dir(dir);
    snprintf(dir, sizeof dir, "%s/no_type", g_tmp);
    variant("mllama", dir, "config.json", "{\"architectures\": []}");
    expect("config without model_type", tsr_processor_load(dir, NULL, &p, &err), TSR_ERR_FORMAT,
           &err, "has no \"model_type\"");
    remove_dir(dir);
    snprintf(dir, sizeof dir, "%s/no_tok", g_tmp);
    variant("llava_next", dir, "tokenizer.json", NULL);
    st = tsr_processor_load(dir, NULL, &p, &err);
    CHECK_MSG(st == TSR_ERR_IO && strstr(err.message, "tokenizer.json"), "missing tokenizer.json: %s %s",
              tsr_status_name(st), err.message);
    CHECK(p == NULL);
    remove_dir(dir);
    snprintf(dir, sizeof dir, "%s/bad_pp", g_tmp);
    variant("qwen2_vl", dir, "preprocessor_config.json",
            "{\"min_pixels\": 3136, \"max_pixels\": 12845056, \"patch_size\": \"fourteen\", "
            "\"merge_size\": 2, \"temporal_patch_size\": 2}");
    st = tsr_processor_load(dir, NULL, &p, &err);
    CHECK_MSG(st == TSR_ERR_FORMAT && strstr(err.message, "patch_size"),
              "bad preprocessor_config value: %s %s", tsr_status_name(st), err.message);
    remove_dir(dir);
    snprintf(dir, sizeof dir, "%s/bad_json", g_tmp);
    variant("mistral3", dir, "processor_config.json", "{\"patch_size\": 14,");
    st = tsr_processor_load(dir, NULL, &p, &err);
    CHECK_MSG(st == TSR_ERR_FORMAT && strstr(err.message, "processor_config.json"),
              "truncated processor_config.json: %s %s", tsr_status_name(st), err.message);
    remove_dir(dir);
    free(png);
    free(wav);
}

int main(void) {
    if (!mkdtemp(g_tmp)) {
        fprintf(stderr, "test_pipeline: cannot create a temp dir\n");
        return 1;
    }
    tsr_test_run("families", test_families);
    tsr_test_run("bad_input", test_bad_input);
    remove_dir(g_tmp);
    return tsr_test_finish();
}
