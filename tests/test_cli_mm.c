/* `tessera run` and `tessera chat` with images, and runtime/examples/describe_image, as a user
 * runs them, on the demo model in assets/qwen2-vl-tiny: the greedy ids equal transformers
 * (tests/fixtures/assets/qwen2_vl_tiny.json) and the conversation API in-process; media errors
 * exit non-zero naming the file (2 for media the model cannot take). */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

extern char **environ;

static char g_tmp[64];
static cJSON *g_ref;
static char g_model[1024], g_jpg[1024], g_wav[1024];

typedef struct {
    int exit_code; /* -1 when killed by a signal */
    char *out;
    char *err;
} run_result;

static char *slurp(const char *path) {
    size_t len;
    char *s = (char *)tsr_test_read(path, &len);
    return s ? s : calloc(1, 1);
}

/* Runs prog with args (NULL-terminated), stdin from in_path (or /dev/null). */
static run_result run_prog(const char *prog, const char *const *args, const char *in_path) {
    run_result r = {-1, NULL, NULL};
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/out", g_tmp);
    snprintf(err_path, sizeof err_path, "%s/err", g_tmp);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char *argv[40];
    argv[0] = prog;
    int n = 1;
    for (; args[n - 1] && n < 39; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid;
    int status = 0;
    if (posix_spawn(&pid, prog, &fa, NULL, (char *const *)argv, environ) == 0 &&
        waitpid(pid, &status, 0) == pid && WIFEXITED(status))
        r.exit_code = WEXITSTATUS(status);
    posix_spawn_file_actions_destroy(&fa);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

static run_result run_cli(const char *const *args, const char *in_path) {
    return run_prog(getenv("TSR_CLI"), args, in_path);
}

static void free_result(run_result *r) {
    free(r->out);
    free(r->err);
}

static int takes_images(void) {
    tsr_model *m = NULL;
    tsr_error err = {0};
    if (tsr_model_load(g_model, NULL, &m, &err)) return 0;
    int yes = (tsr_model_media_kinds(m) & (1u << TSR_MEDIA_IMAGE)) != 0;
    tsr_model_free(m);
    return yes;
}

/* Greedy reply of tsr_chat in-process: one user message with the image then text. */
static char *chat_in_process(const char *text, int64_t max_tokens, tsr_token_ids *ids) {
    tsr_model *m = NULL;
    tsr_chat *c = NULL;
    tsr_error err = {0};
    size_t len = 0;
    uint8_t *jpg = tsr_test_read(g_jpg, &len);
    char *reply = NULL;
    CHECK_OK(tsr_model_load(g_model, NULL, &m, &err), &err);
    if (m) CHECK_OK(tsr_chat_new(m, NULL, &c, &err), &err);
    if (c && jpg) {
        tsr_chat_part parts[] = {{TSR_CHAT_PART_IMAGE, NULL, NULL},
                                 {TSR_CHAT_PART_TEXT, text, NULL}};
        tsr_chat_message msg = {"user", NULL, parts, 2};
        tsr_media media = {TSR_MEDIA_IMAGE, jpg, len, NULL, NULL};
        tsr_generate_params gp = tsr_generate_params_default();
        gp.sampling.temperature = 0;
        gp.max_tokens = max_tokens;
        CHECK_OK(tsr_chat_add(c, &msg, &media, 1, &err), &err);
        CHECK_OK(tsr_chat_generate(c, &gp, &reply, ids, NULL, &err), &err);
    }
    tsr_chat_free(c);
    tsr_model_free(m);
    free(jpg);
    return reply;
}

static int json_ids_equal(const cJSON *got, const cJSON *want) {
    if (!cJSON_IsArray(got) || cJSON_GetArraySize(got) != cJSON_GetArraySize(want)) return 0;
    for (int i = 0; i < cJSON_GetArraySize(want); i++)
        if (cJSON_GetArrayItem(got, i)->valuedouble != cJSON_GetArrayItem(want, i)->valuedouble)
            return 0;
    return 1;
}

static void test_run_json(void) {
    if (!takes_images()) {
        tsr_test_skip("the qwen2_vl vision encoder is not available in this build");
        return;
    }
    const cJSON *t1 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(g_ref, "turns"), 0);
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(t1, "ids");
    const char *args[] = {"run", "--model", g_model, "--image", g_jpg, "-p",
                          "Describe this image.", "--temp", "0", "--max-tokens", "16",
                          "--threads", "2", "--json", NULL};
    run_result r = run_cli(args, NULL);
    CHECK_MSG(r.exit_code == 0, "exit %d: %s", r.exit_code, r.err);
    cJSON *j = cJSON_Parse(r.out);
    CHECK_MSG(j != NULL, "not JSON: %s", r.out);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(j, "ids");
    CHECK_MSG(json_ids_equal(ids, want), "ids differ from transformers: %s", r.out);
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(j, "text");
    CHECK(cJSON_IsString(text) &&
          !strcmp(text->valuestring, cJSON_GetObjectItemCaseSensitive(t1, "text")->valuestring));
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "prompt_tokens");
    CHECK(cJSON_IsNumber(pt) &&
          pt->valueint == cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t1, "input_ids")));
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "completion_tokens");
    CHECK(cJSON_IsNumber(ct) && ct->valueint == cJSON_GetArraySize(want));
    CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(j, "finish_reason")));
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(j, "timings");
    static const char *keys[] = {"image_encode_ms", "audio_encode_ms", "prefill_ms", "decode_ms",
                                 "prefill_tokens_per_s", "decode_tokens_per_s"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        CHECK_MSG(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(tm, keys[i])), "timings.%s",
                  keys[i]);
    CHECK(cJSON_GetObjectItemCaseSensitive(tm, "image_encode_ms")->valuedouble > 0);
    /* The same ids as the conversation API in-process. */
    tsr_token_ids mine = {0};
    char *reply = chat_in_process("Describe this image.", 16, &mine);
    int same = cJSON_GetArraySize(ids) == (int)mine.n;
    for (size_t i = 0; same && i < mine.n; i++)
        same = (int32_t)cJSON_GetArrayItem(ids, (int)i)->valuedouble == mine.ids[i];
    CHECK_MSG(same, "CLI ids differ from tsr_chat in-process");
    /* Streaming prints the same text and a newline. */
    const char *sargs[] = {"run", "--model", g_model, "--image", g_jpg, "-p",
                           "Describe this image.", "--temp", "0", "--max-tokens", "16", NULL};
    run_result s = run_cli(sargs, NULL);
    size_t tl = reply ? strlen(reply) : 0;
    CHECK_MSG(s.exit_code == 0 && reply && !strncmp(s.out, reply, tl) && !strcmp(s.out + tl, "\n"),
              "streamed '%s'", s.out);
    free_result(&s);
    /* The rendered prompt given as it is (--no-template) gives the same ids. */
    const char *prompt = cJSON_GetObjectItemCaseSensitive(t1, "prompt")->valuestring;
    const char *rargs[] = {"run", "--model", g_model, "--image", g_jpg, "-p", prompt,
                           "--no-template", "--temp", "0", "--max-tokens", "16", "--json", NULL};
    run_result raw = run_cli(rargs, NULL);
    cJSON *rj = cJSON_Parse(raw.out);
    CHECK_MSG(raw.exit_code == 0 && json_ids_equal(cJSON_GetObjectItemCaseSensitive(rj, "ids"), want),
              "--no-template: exit %d: %s%s", raw.exit_code, raw.out, raw.err);
    cJSON_Delete(rj);
    free_result(&raw);
    tsr_chat_string_free(reply);
    tsr_token_ids_free(&mine);
    cJSON_Delete(j);
    free_result(&r);
}

static void test_media_errors(void) {
    /* Audio on a model that takes none, WAV bytes given as an image: usage errors (2). */
    const char *a1[] = {"run", "--model", g_model, "--audio", g_wav, "-p", "x", NULL};
    run_result r = run_cli(a1, NULL);
    CHECK_MSG(r.exit_code == 2 && strstr(r.err, g_wav) && strstr(r.err, "TSR_ERR_INVALID_ARG") &&
                  strstr(r.err, "takes no audio"),
              "exit %d: %s", r.exit_code, r.err);
    free_result(&r);
    if (!takes_images()) {
        tsr_test_skip("the qwen2_vl vision encoder is not available in this build");
        return;
    }
    const char *a2[] = {"run", "--model", g_model, "--image", g_wav, "-p", "x", NULL};
    r = run_cli(a2, NULL);
    CHECK_MSG(r.exit_code == 2 && strstr(r.err, g_wav) && strstr(r.err, "TSR_ERR_INVALID_ARG"),
              "exit %d: %s", r.exit_code, r.err);
    free_result(&r);
    /* A truncated JPEG and a missing file: runtime failures (1) naming the file. */
    char cut[128];
    snprintf(cut, sizeof cut, "%s/cut.jpg", g_tmp);
    size_t len = 0;
    uint8_t *jpg = tsr_test_read(g_jpg, &len);
    FILE *f = fopen(cut, "wb");
    CHECK(jpg && f);
    if (f && jpg) fwrite(jpg, 1, len / 3, f);
    if (f) fclose(f);
    free(jpg);
    const char *a3[] = {"run", "--model", g_model, "--image", cut, "-p", "x", NULL};
    r = run_cli(a3, NULL);
    CHECK_MSG(r.exit_code == 1 && strstr(r.err, cut) && strstr(r.err, "TSR_ERR_FORMAT"),
              "exit %d: %s", r.exit_code, r.err);
    free_result(&r);
    const char *a4[] = {"run", "--model", g_model, "--image", "/nonexistent/x.png", "-p", "x",
                        NULL};
    r = run_cli(a4, NULL);
    CHECK_MSG(r.exit_code == 1 && strstr(r.err, "/nonexistent/x.png"), "exit %d: %s",
              r.exit_code, r.err);
    free_result(&r);
}

/* Two turns through a pipe: the replies equal transformers' on the same conversation, the
 * second turn reports its cached tokens with --verbose. */
static void test_chat_pipe(void) {
    char in[128];
    snprintf(in, sizeof in, "%s/in", g_tmp);
    FILE *f = fopen(in, "w");
    CHECK(f != NULL);
    if (!f) return;
    int images = takes_images();
    if (images) fprintf(f, "/image %s\nDescribe this image.\nWhat colours are in it?\n", g_jpg);
    fprintf(f, "/audio %s\n/reset\n/quit\nnot read\n", g_wav);
    fclose(f);
    const char *args[] = {"chat", "--model", g_model, "--temp", "0", "--max-tokens", "16",
                          "--verbose", NULL};
    run_result r = run_cli(args, in);
    /* /audio is a usage error (reported, the chat goes on, exit 2 at the end). */
    CHECK_MSG(r.exit_code == 2 && strstr(r.err, "takes no audio"), "exit %d: %s", r.exit_code,
              r.err);
    if (images) {
        const cJSON *turns = cJSON_GetObjectItemCaseSensitive(g_ref, "turns");
        char want[4096];
        snprintf(want, sizeof want, "%s\n%s\n",
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(turns, 0), "text")->valuestring,
                 cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(turns, 1), "text")->valuestring);
        CHECK_MSG(!strcmp(r.out, want), "chat printed '%s', transformers '%s'", r.out, want);
        CHECK_MSG(strstr(r.err, "cached)") != NULL, "%s", r.err);
    } else {
        tsr_test_skip("the qwen2_vl vision encoder is not available in this build");
    }
    free_result(&r);
    /* A text-only conversation over two turns. */
    f = fopen(in, "w");
    if (!f) return;
    fprintf(f, "Hi.\nAnd then what happened?\n");
    fclose(f);
    r = run_cli(args, in);
    CHECK_MSG(r.exit_code == 0 && strstr(r.err, "cached)"), "exit %d: %s", r.exit_code, r.err);
    free_result(&r);
    /* /reset starts over: the same message gets the same reply; unknown commands are usage
     * errors; a leading // sends a message starting with /. */
    f = fopen(in, "w");
    if (!f) return;
    fprintf(f, "Hi.\n/reset\n/bogus\nHi.\n//x\n");
    fclose(f);
    const char *sys[] = {"chat", "--model", g_model, "--temp", "0", "--max-tokens", "4",
                         "--system", "You are a helpful assistant.", NULL};
    r = run_cli(sys, in);
    char *nl = strchr(r.out, '\n');
    size_t first = nl ? (size_t)(nl - r.out) + 1 : 0;
    CHECK_MSG(r.exit_code == 2 && strstr(r.err, "/bogus") && first &&
                  !strncmp(r.out, r.out + first, first),
              "exit %d: out '%s' err '%s'", r.exit_code, r.out, r.err);
    int lines = 0;
    for (const char *p = r.out; *p; p++) lines += *p == '\n';
    CHECK(lines == 3);
    free_result(&r);
    const char *nomodel[] = {"chat", NULL};
    r = run_cli(nomodel, NULL);
    CHECK(r.exit_code == 2);
    free_result(&r);
}

/* runtime/examples/describe_image prints what tsr_chat gives in-process (64 tokens). */
static void test_example(void) {
    if (!takes_images()) {
        tsr_test_skip("the qwen2_vl vision encoder is not available in this build");
        return;
    }
    char prog[1024];
    snprintf(prog, sizeof prog, "%s", getenv("TSR_CLI"));
    char *slash = strrchr(prog, '/');
    if (!slash) {
        tsr_test_skip("TSR_CLI has no directory");
        return;
    }
    snprintf(slash + 1, sizeof prog - (size_t)(slash + 1 - prog), "describe_image");
    if (access(prog, X_OK) != 0) {
        CHECK_MSG(0, "%s was not built", prog);
        return;
    }
    const char *args[] = {g_model, g_jpg, NULL};
    run_result r = run_prog(prog, args, NULL);
    tsr_token_ids ids = {0};
    char *reply = chat_in_process("Describe this image.", 64, &ids);
    size_t tl = reply ? strlen(reply) : 0;
    CHECK_MSG(r.exit_code == 0 && reply && !strncmp(r.out, reply, tl) && !strcmp(r.out + tl, "\n"),
              "exit %d, printed '%s': %s", r.exit_code, r.out, r.err);
    free_result(&r);
    const char *bad[] = {g_model, "/nonexistent.jpg", NULL};
    r = run_prog(prog, bad, NULL);
    CHECK(r.exit_code == 1);
    free_result(&r);
    tsr_chat_string_free(reply);
    tsr_token_ids_free(&ids);
}

int main(void) {
    if (!getenv("TSR_CLI")) {
        printf("skipped: TSR_CLI not set\n");
        return tsr_test_finish();
    }
    snprintf(g_model, sizeof g_model, "%s", tsr_test_fixture("../../assets/qwen2-vl-tiny"));
    snprintf(g_jpg, sizeof g_jpg, "%s", tsr_test_fixture("../../assets/sample.jpg"));
    snprintf(g_wav, sizeof g_wav, "%s", tsr_test_fixture("../../assets/sample.wav"));
    size_t len = 0;
    char *ref = (char *)tsr_test_read(tsr_test_fixture("assets/qwen2_vl_tiny.json"), &len);
    g_ref = ref ? cJSON_Parse(ref) : NULL;
    free(ref);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_cli_mm_XXXXXX");
    if (!g_ref || !mkdtemp(g_tmp)) {
        fprintf(stderr, "cannot read the fixture or make a temporary directory\n");
        cJSON_Delete(g_ref);
        return 1;
    }
    tsr_test_run("run_json", test_run_json);
    tsr_test_run("media_errors", test_media_errors);
    tsr_test_run("chat_pipe", test_chat_pipe);
    tsr_test_run("example", test_example);
    const char *files[] = {"out", "err", "in", "cut.jpg"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", g_tmp, files[i]);
        unlink(p);
    }
    rmdir(g_tmp);
    cJSON_Delete(g_ref);
    return tsr_test_finish();
}
