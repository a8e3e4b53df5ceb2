/* `tessera run` as a user runs it: greedy output (--temp 0 --json) of each text fixture equals
 * transformers' generate() (ids and decoded text, stopping on the EOS ids); streaming mode
 * prints the same text; usage errors exit 2, a broken model directory exits 1. */
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

static run_result run_cli(const char *const *args) {
    run_result r = {-1, NULL, NULL};
    char out_path[128], err_path[128];
    snprintf(out_path, sizeof out_path, "%s/out", g_tmp);
    snprintf(err_path, sizeof err_path, "%s/err", g_tmp);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const char *argv[32];
    const char *cli = getenv("TSR_CLI");
    argv[0] = cli ? cli : "tessera";
    int n = 1;
    for (; args[n - 1] && n < 31; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid;
    int status = 0;
    if (posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ) == 0 &&
        waitpid(pid, &status, 0) == pid && WIFEXITED(status))
        r.exit_code = WEXITSTATUS(status);
    posix_spawn_file_actions_destroy(&fa);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

static void free_result(run_result *r) {
    free(r->out);
    free(r->err);
}

static const char *MODELS[] = {"qwen2", "llama", "mistral"};

static void test_greedy_equals_transformers(void) {
    if (!getenv("TSR_CLI")) {
        tsr_test_skip("TSR_CLI not set");
        return;
    }
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        char rel[128], dir[1024];
        snprintf(rel, sizeof rel, "decoder/%s", MODELS[i]);
        snprintf(dir, sizeof dir, "%s", tsr_test_fixture(rel));
        snprintf(rel, sizeof rel, "decoder/%s.expected.safetensors", MODELS[i]);
        tsr_error err = {0};
        tsr_safetensors *exp = NULL;
        CHECK_OK(tsr_safetensors_open_file(tsr_test_fixture(rel), &exp, &err), &err);
        tsr_tensor ids;
        if (!exp || tsr_safetensors_get(exp, "cli.ids", &ids, &err)) {
            tsr_safetensors_close(exp);
            CHECK(0);
            continue;
        }
        const char *prompt = tsr_safetensors_metadata(exp, "cli_prompt");
        const char *text = tsr_safetensors_metadata(exp, "cli_text");
        const char *args[] = {"run", "--model", dir, "-p", prompt, "--temp", "0",
                              "--max-tokens", "12", "--threads", "2", "--json", NULL};
        run_result r = run_cli(args);
        CHECK_MSG(r.exit_code == 0, "%s: exit %d: %s", MODELS[i], r.exit_code, r.err);
        cJSON *j = cJSON_Parse(r.out);
        const cJSON *got = cJSON_GetObjectItemCaseSensitive(j, "ids");
        const int32_t *want = ids.data;
        int n = cJSON_GetArraySize(got), same = n == (int)ids.shape[0];
        int k = 0;
        for (const cJSON *e = got ? got->child : NULL; same && e; e = e->next, k++)
            same = (int32_t)e->valuedouble == want[k];
        CHECK_MSG(same, "%s: ids differ: %s", MODELS[i], r.out);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        CHECK_MSG(cJSON_IsString(t) && !strcmp(t->valuestring, text), "%s: text '%s' vs '%s'",
                  MODELS[i], cJSON_IsString(t) ? t->valuestring : "?", text);
        CHECK(cJSON_GetObjectItemCaseSensitive(j, "timings") != NULL);
        cJSON_Delete(j);
        free_result(&r);
        /* Streaming prints the same text and a newline. */
        const char *sargs[] = {"run", "--model", dir, "-p", prompt, "--temp", "0",
                               "--max-tokens", "12", NULL};
        r = run_cli(sargs);
        CHECK(r.exit_code == 0);
        size_t tl = strlen(text);
        CHECK_MSG(!strncmp(r.out, text, tl) && !strcmp(r.out + tl, "\n"), "%s: streamed '%s'",
                  MODELS[i], r.out);
        free_result(&r);
        tsr_safetensors_close(exp);
    }
}

static void test_errors(void) {
    if (!getenv("TSR_CLI")) {
        tsr_test_skip("TSR_CLI not set");
        return;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tsr_test_fixture("decoder/qwen2"));
    const char *a1[] = {"run", "--model", dir, NULL};
    run_result r = run_cli(a1);
    CHECK(r.exit_code == 2);
    free_result(&r);
    const char *a2[] = {"run", "--model", dir, "-p", "x", "--temp", "abc", NULL};
    r = run_cli(a2);
    CHECK(r.exit_code == 2);
    free_result(&r);
    const char *a3[] = {"run", "--model", dir, "-p", "x", "--top-p", "2", NULL};
    r = run_cli(a3);
    CHECK(r.exit_code == 2);
    free_result(&r);
    /* qwen2_bf16 has no tokenizer: runtime failure naming the directory. */
    char bad[1024];
    snprintf(bad, sizeof bad, "%s", tsr_test_fixture("decoder/qwen2_bf16"));
    const char *a4[] = {"run", "--model", bad, "-p", "x", NULL};
    r = run_cli(a4);
    CHECK_MSG(r.exit_code == 1 && strstr(r.err, bad), "exit %d: %s", r.exit_code, r.err);
    free_result(&r);
    /* A prompt longer than the context is an error, not a crash. */
    const char *a5[] = {"run", "--model", dir, "-p", "a long prompt that will not fit", "--ctx",
                        "4", NULL};
    r = run_cli(a5);
    CHECK_MSG(r.exit_code == 1 && strstr(r.err, "TSR_ERR_LIMIT"), "exit %d: %s", r.exit_code,
              r.err);
    free_result(&r);
}

int main(void) {
    snprintf(g_tmp, sizeof g_tmp, "/tmp/tsr_dec_cli_XXXXXX");
    if (!mkdtemp(g_tmp)) return 1;
    tsr_test_run("greedy_equals_transformers", test_greedy_equals_transformers);
    tsr_test_run("errors", test_errors);
    char p[128];
    snprintf(p, sizeof p, "%s/out", g_tmp);
    unlink(p);
    snprintf(p, sizeof p, "%s/err", g_tmp);
    unlink(p);
    rmdir(g_tmp);
    return tsr_test_finish();
}
