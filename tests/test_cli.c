/* The tessera CLI as a user runs it: `tessera info` over every image and audio fixture (JSON
 * facts equal the reference manifests, PPM equal to the reference pixels), over corrupt files
 * (exit 1 with "FILE: TSR_ERR_<NAME>: detail"), and usage errors (exit 2). No run may end
 * in a signal. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

typedef struct {
    int exit_code; /* -1 when killed by a signal */
    int signal;
    char *out;
    char *err;
} run_result;

static char g_tmp[64];

static char *slurp(const char *path) {
    size_t len;
    char *s = (char *)tsr_test_read(path, &len);
    return s ? s : calloc(1, 1);
}

/* Runs the CLI with argv (NULL-terminated, argv[0] ignored), capturing stdout and stderr. */
static run_result run_cli(const char *const *args) {
    run_result r = {0};
    const char *cli = getenv("TSR_CLI");
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/out", g_tmp);
    snprintf(err_path, sizeof err_path, "%s/err", g_tmp);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[32];
    int n = 0;
    argv[n++] = (char *)cli;
    for (int i = 1; args[i] && n < 31; i++) argv[n++] = (char *)args[i];
    argv[n] = NULL;
    pid_t pid;
    int status = 0;
    if (!cli || posix_spawn(&pid, cli, &fa, NULL, argv, environ) != 0 ||
        waitpid(pid, &status, 0) < 0) {
        r.exit_code = -2;
    } else if (WIFSIGNALED(status)) {
        r.exit_code = -1;
        r.signal = WTERMSIG(status);
    } else {
        r.exit_code = WEXITSTATUS(status);
    }
    posix_spawn_file_actions_destroy(&fa);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

static void free_result(run_result *r) {
    free(r->out);
    free(r->err);
}

static cJSON *load_json(const char *rel) {
    size_t len;
    char *text = (char *)tsr_test_read(tsr_test_fixture(rel), &len);
    cJSON *j = text ? cJSON_ParseWithLength(text, len) : NULL;
    free(text);
    return j;
}

static int json_int(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNumber(v) ? v->valueint : -12345;
}

/* Decodes a reference PNG (or the CLI's PPM) into RGB8 with the library. */
static int load_rgb(const char *path, tsr_image *img) {
    size_t len;
    uint8_t *buf = tsr_test_read(path, &len);
    if (!buf) return -1;
    int rc = 0;
    if (len > 2 && buf[0] == 'P' && buf[1] == '6') {
        int w, h, maxv, off = 0;
        if (sscanf((char *)buf, "P6 %d %d %d%n", &w, &h, &maxv, &off) != 3 || maxv != 255 ||
            tsr_image_alloc(img, w, h, 3, NULL) != TSR_OK ||
            (size_t)off + 1 + (size_t)w * h * 3 != len) {
            rc = -1;
        } else {
            memcpy(img->data, buf + off + 1, (size_t)w * h * 3);
        }
    } else {
        rc = tsr_image_decode(buf, len, NULL, img, NULL, NULL) == TSR_OK ? 0 : -1;
    }
    free(buf);
    return rc;
}

static void test_images(void) {
    cJSON *m = load_json("images/manifest.json");
    CHECK(m != NULL);
    const cJSON *images = cJSON_GetObjectItem(m, "images");
    int count = 0;
    for (const cJSON *e = images ? images->child : NULL; e; e = e->next, count++) {
        char src[4096], ppm[256], want[4096];
        snprintf(src, sizeof src, "%s",
                 tsr_test_fixture("images/") /* dir */);
        strncat(src, cJSON_GetObjectItem(e, "file")->valuestring, sizeof src - strlen(src) - 1);
        snprintf(ppm, sizeof ppm, "%s/img.ppm", g_tmp);
        const char *args[] = {"tessera", "info", "--json", "--ppm", ppm, src, NULL};
        run_result r = run_cli(args);
        /* The default limits refuse aspect ratios above 200 (DESIGN.md), from the header. */
        int w = json_int(e, "width"), h = json_int(e, "height");
        if ((w > h ? (double)w / h : (double)h / w) > 200.0) {
            CHECK_MSG(r.exit_code == 1 && strstr(r.err, "TSR_ERR_LIMIT: ") &&
                          strstr(r.err, "max_aspect"),
                      "%s: exit %d: %s", src, r.exit_code, r.err);
            free_result(&r);
            continue;
        }
        CHECK_MSG(r.exit_code == 0, "%s: exit %d: %s", src, r.exit_code, r.err);
        cJSON *j = cJSON_Parse(r.out);
        CHECK_MSG(j && !strcmp(cJSON_GetObjectItem(j, "kind")->valuestring, "image") &&
                      json_int(j, "width") == json_int(e, "width") &&
                      json_int(j, "height") == json_int(e, "height") &&
                      json_int(j, "orientation") == json_int(e, "orientation") &&
                      !strcmp(cJSON_GetObjectItem(j, "format")->valuestring,
                              cJSON_GetObjectItem(e, "format")->valuestring),
                  "%s: %s", src, r.out);
        cJSON_Delete(j);
        /* The PPM is the composited-over-white image when the file has alpha, else RGB. */
        const cJSON *white = cJSON_GetObjectItem(e, "white");
        const char *ref = cJSON_IsString(white) ? white->valuestring
                                                : cJSON_GetObjectItem(e, "rgb")->valuestring;
        snprintf(want, sizeof want, "%s", tsr_test_fixture("images/"));
        strncat(want, ref, sizeof want - strlen(want) - 1);
        tsr_image a = {0}, b = {0};
        CHECK_MSG(load_rgb(ppm, &a) == 0 && load_rgb(want, &b) == 0 && a.width == b.width &&
                      a.height == b.height &&
                      !memcmp(a.data, b.data, (size_t)a.width * a.height * 3),
                  "%s: PPM differs from %s", src, ref);
        tsr_image_free(&a);
        tsr_image_free(&b);
        free_result(&r);
    }
    CHECK(count >= 60);
    cJSON_Delete(m);
}

static void test_audio(void) {
    cJSON *m = load_json("audio/manifest.json");
    CHECK(m != NULL);
    const cJSON *clips = cJSON_GetObjectItem(m, "clips");
    int count = 0;
    for (const cJSON *e = clips ? clips->child : NULL; e; e = e->next) {
        if (cJSON_IsTrue(cJSON_GetObjectItem(e, "expect_error"))) continue;
        char src[4096];
        snprintf(src, sizeof src, "%s", tsr_test_fixture("audio/"));
        strncat(src, cJSON_GetObjectItem(e, "file")->valuestring, sizeof src - strlen(src) - 1);
        const char *args[] = {"tessera", "info", "--json", src, NULL};
        run_result r = run_cli(args);
        if (r.exit_code == 1 && strstr(r.err, "TSR_ERR_UNSUPPORTED")) {
            free_result(&r); /* e.g. MP3 on a libsndfile without it: a clean refusal */
            continue;
        }
        count++;
        cJSON *j = cJSON_Parse(r.out);
        const cJSON *frames = j ? cJSON_GetObjectItem(j, "frames") : NULL;
        CHECK_MSG(r.exit_code == 0 && j &&
                      !strcmp(cJSON_GetObjectItem(j, "kind")->valuestring, "audio") &&
                      json_int(j, "sample_rate") == json_int(e, "sample_rate") &&
                      json_int(j, "channels") == json_int(e, "channels") && frames &&
                      frames->valuedouble == cJSON_GetObjectItem(e, "frames")->valuedouble,
                  "%s: exit %d: %s %s", src, r.exit_code, r.out, r.err);
        cJSON_Delete(j);
        free_result(&r);
    }
    CHECK(count >= 10);
    cJSON_Delete(m);
}

/* Writes len bytes to a temp file and returns its path (static buffer). */
static const char *temp_file(const char *name, const uint8_t *data, size_t len) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", g_tmp, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        if (len) fwrite(data, 1, len, f);
        fclose(f);
    }
    return path;
}

static void test_bad_files(void) {
    const char *sources[] = {"images/png_g1.png", "audio/clips/sine440_16k_pcm16.wav"};
    int cases = 0;
    for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++) {
        size_t len;
        uint8_t *buf = tsr_test_read(tsr_test_fixture(sources[s]), &len);
        CHECK(buf != NULL);
        /* Truncations at several cut points, and a flipped byte in the middle. */
        size_t cuts[] = {0, 1, 7, 12, 33, 60, len / 2};
        for (size_t c = 0; buf && c < sizeof cuts / sizeof cuts[0]; c++, cases++) {
            const char *path = temp_file("bad.bin", buf, cuts[c]);
            const char *args[] = {"tessera", "info", path, NULL};
            run_result r = run_cli(args);
            char prefix[300];
            snprintf(prefix, sizeof prefix, "%s: TSR_ERR_", path);
            /* A WAV cut inside its data chunk still decodes (libsndfile reads what is there);
             * everything else must fail cleanly. Neither may crash. */
            CHECK_MSG(r.exit_code == 1 ? !strncmp(r.err, prefix, strlen(prefix))
                                       : r.exit_code == 0 && s == 1 && cuts[c] > 44,
                      "%s cut at %zu: exit %d, stderr '%s'", sources[s], cuts[c], r.exit_code,
                      r.err);
            free_result(&r);
        }
        free(buf);
    }
    CHECK(cases >= 10);
}

static void test_usage(void) {
    const char *no_args[] = {"tessera", NULL};
    const char *no_files[] = {"tessera", "info", NULL};
    const char *bad_opt[] = {"tessera", "info", "--frobnicate", "x", NULL};
    const char *ppm_missing[] = {"tessera", "info", "--ppm", NULL};
    const char *bad_cmd[] = {"tessera", "dance", NULL};
    const char *ppm_not_dir[] = {"tessera", "info", "--ppm", "/nonexistent/x", "a", "b", NULL};
    const char *const *usage[] = {no_args, no_files, bad_opt, ppm_missing, bad_cmd, ppm_not_dir};
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        run_result r = run_cli(usage[i]);
        CHECK_MSG(r.exit_code == 2 && strlen(r.err) > 0, "usage case %zu: exit %d", i,
                  r.exit_code);
        free_result(&r);
    }
    const char *help[] = {"tessera", "info", "--help", NULL};
    run_result r = run_cli(help);
    CHECK(r.exit_code == 0 && strstr(r.out, "usage: tessera info"));
    free_result(&r);
    const char *missing[] = {"tessera", "info", "/nonexistent/file.png", NULL};
    r = run_cli(missing);
    CHECK(r.exit_code == 1 && strstr(r.err, "/nonexistent/file.png: TSR_ERR_IO: "));
    free_result(&r);
    const char *dir[] = {"tessera", "info", "/tmp", NULL};
    r = run_cli(dir);
    CHECK(r.exit_code == 1 && strstr(r.err, "/tmp: TSR_ERR_IO: "));
    free_result(&r);
}

/* Copies a fixture file into dir. */
static int copy_file(const char *from, const char *dir, const char *name) {
    size_t len;
    uint8_t *buf = tsr_test_read(from, &len);
    if (!buf) return -1;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int rc = f && fwrite(buf, 1, len, f) == len ? 0 : -1;
    if (f) fclose(f);
    free(buf);
    return rc;
}

/* tokenize -p equals the tokenizer fixtures; tokenize --messages renders the official Qwen2-VL
 * template (read from ../shared) exactly as the chat fixtures say and tokenizes it without
 * added special tokens; detokenize inverts. */
static void test_tokenize(void) {
    cJSON *cases = load_json("tokenizer/qwen2/cases.json");
    const cJSON *enc = cJSON_GetObjectItem(cases, "encode");
    CHECK_MSG(cJSON_GetArraySize(enc) > 0, "no encode cases in tokenizer/qwen2/cases.json");
    const char *model = tsr_test_fixture("tokenizer/qwen2");
    int n = 0;
    for (const cJSON *c = enc ? enc->child : NULL; c && n < 25; c = c->next, n++) {
        const char *text = cJSON_GetObjectItem(c, "text")->valuestring;
        if (!*text || text[0] == '-') continue; /* not expressible as one argv word */
        const char *args[] = {"tessera", "tokenize", "--model", model, "-p", text, "--json", NULL};
        run_result r = run_cli(args);
        cJSON *j = cJSON_Parse(r.out);
        const cJSON *got = cJSON_GetObjectItem(j, "ids");
        const cJSON *want = cJSON_GetObjectItem(c, "ids_special");
        int same = got && want && cJSON_GetArraySize(got) == cJSON_GetArraySize(want);
        for (const cJSON *a = got ? got->child : NULL, *b = want ? want->child : NULL;
             same && a && b; a = a->next, b = b->next)
            same = a->valueint == b->valueint;
        CHECK_MSG(r.exit_code == 0 && same, "tokenize '%s': %s %s", text, r.out, r.err);
        cJSON_Delete(j);
        free_result(&r);
    }
    cJSON_Delete(cases);

    const char *detok[] = {"tessera", "detokenize", "--model", model, "572", "269", "4000",
                           "--json", NULL};
    run_result r = run_cli(detok);
    CHECK_MSG(r.exit_code == 0 && strstr(r.out, "<|endoftext|>"), "%s %s", r.out, r.err);
    free_result(&r);
    const char *bad_id[] = {"tessera", "detokenize", "--model", model, "99999999", NULL};
    r = run_cli(bad_id);
    CHECK_MSG(r.exit_code == 1 && strstr(r.err, "TSR_ERR_INVALID_ARG"), "%s", r.err);
    free_result(&r);

    const char *tmpl = tsr_test_shared(
        "reference/checkpoints/Qwen--Qwen2-VL-2B-Instruct/chat_template.json");
    if (!tmpl) {
        tsr_test_skip("tokenize --messages: ../shared (official chat templates) is absent");
        return;
    }
    char dir[128];
    snprintf(dir, sizeof dir, "%s/model", g_tmp);
    mkdir(dir, 0700);
    CHECK(copy_file(tsr_test_fixture("tokenizer/qwen2/tokenizer.json"), dir,
                    "tokenizer.json") == 0);
    CHECK(copy_file(tsr_test_fixture("tokenizer/qwen2/tokenizer_config.json"), dir,
                    "tokenizer_config.json") == 0);
    CHECK(copy_file(tmpl, dir, "chat_template.json") == 0);
    cJSON *chat = load_json("chat/qwen2_vl--qwen2-vl-instruct.json");
    int checked = 0;
    for (const cJSON *c = cJSON_GetObjectItem(chat, "cases")->child; c; c = c->next) {
        if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"))) continue;
        const cJSON *expected = cJSON_GetObjectItem(c, "expected");
        if (!cJSON_IsString(expected)) continue; /* a case where the template raises */
        char *msgs = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "messages"));
        const char *path = temp_file("messages.json", (const uint8_t *)msgs, strlen(msgs));
        free(msgs);
        const char *args[] = {"tessera", "tokenize", "--model", dir, "--messages", path,
                              "--json", NULL};
        r = run_cli(args);
        cJSON *j = cJSON_Parse(r.out);
        const cJSON *prompt = cJSON_GetObjectItem(j, "prompt");
        CHECK_MSG(r.exit_code == 0 && cJSON_IsString(prompt) &&
                      !strcmp(prompt->valuestring, expected->valuestring),
                  "%s: exit %d %s %s", cJSON_GetObjectItem(c, "name")->valuestring, r.exit_code,
                  r.out, r.err);
        /* ids equal the plain tokenization of the expected prompt, no added specials */
        tsr_tokenizer *tok = NULL;
        tsr_token_ids ids = {0};
        tsr_error err = {0};
        CHECK_OK(tsr_tokenizer_load(dir, &tok, &err), &err);
        CHECK_OK(tsr_tokenizer_encode(tok, expected->valuestring, strlen(expected->valuestring),
                                      0, &ids, &err), &err);
        const cJSON *got = cJSON_GetObjectItem(j, "ids");
        int same = got && (size_t)cJSON_GetArraySize(got) == ids.n;
        size_t k = 0;
        for (const cJSON *a = got ? got->child : NULL; same && a; a = a->next, k++)
            same = a->valueint == ids.ids[k];
        CHECK(same);
        tsr_token_ids_free(&ids);
        tsr_tokenizer_free(tok);
        cJSON_Delete(j);
        free_result(&r);
        checked++;
    }
    CHECK(checked >= 5);
    cJSON_Delete(chat);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_cli_XXXXXX");
    if (!mkdtemp(g_tmp) || !getenv("TSR_CLI")) {
        fprintf(stderr, "test_cli: needs TSR_CLI and a temp dir\n");
        return 1;
    }
    tsr_test_run("images", test_images);
    tsr_test_run("audio", test_audio);
    tsr_test_run("bad_files", test_bad_files);
    tsr_test_run("usage", test_usage);
    tsr_test_run("tokenize", test_tokenize);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_tmp);
    return tsr_test_finish();
}
