/* Shared encoder blocks (vision/vit.h) against PyTorch float32 (tools/refgen/gen_vit.py):
 * three block configurations, on one thread and on a pool of three. */
#include <math.h>
#include <string.h>

#include "harness.h"
#include "vit.h"

static const float *f32(tsr_safetensors *st, const char *name) {
    tsr_tensor t;
    tsr_error err = {0};
    if (tsr_safetensors_get(st, name, &t, &err) || t.dtype != TSR_DTYPE_F32) return NULL;
    return t.data;
}

static void run_block(const char *name, int32_t threads) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", tsr_test_fixture("vit"), name);
    tsr_safetensors *st = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_test_open_safetensors(path, &st, &err), &err);
    if (!st) return;
    tsr__weights *w = NULL;
    CHECK_OK(tsr__weights_new(&st, NULL, 1, &w, &err), &err);
    const int64_t T = 13, D = 32, H = 4, HD = 8, FF = 48;
    tsr__vit_block b;
    memset(&b, 0, sizeof b);
    b.dim = D;
    b.n_heads = H;
    b.head_dim = HD;
    int pix = !strcmp(name, "pixtral"), qwen = !strcmp(name, "qwen");
    tsr__norm_kind nk = pix ? TSR__RMSNORM : TSR__LAYERNORM;
    float eps = pix ? 1e-5f : 1e-6f;
    CHECK_OK(tsr__norm_load(w, "norm1", nk, D, eps, &b.norm1, &err), &err);
    CHECK_OK(tsr__norm_load(w, "norm2", nk, D, eps, &b.norm2, &err), &err);
    if (qwen) {
        b.fused_qkv = 1;
        CHECK_OK(tsr__linear_load(w, "qkv", D, 3 * H * HD, 1, &b.qkv, &err), &err);
    } else {
        CHECK_OK(tsr__linear_load(w, "q", D, H * HD, !pix, &b.q, &err), &err);
        CHECK_OK(tsr__linear_load(w, "k", D, H * HD, !pix, &b.k, &err), &err);
        CHECK_OK(tsr__linear_load(w, "v", D, H * HD, !pix, &b.v, &err), &err);
    }
    CHECK_OK(tsr__linear_load(w, "o", H * HD, D, !pix, &b.o, &err), &err);
    tsr__vit_opts o;
    memset(&o, 0, sizeof o);
    if (pix) {
        CHECK_OK(tsr__norm_load(w, "q_norm", TSR__RMSNORM, HD, 1e-6f, &b.q_norm, &err), &err);
        CHECK_OK(tsr__norm_load(w, "k_norm", TSR__RMSNORM, HD, 1e-6f, &b.k_norm, &err), &err);
        b.swiglu = 1;
        b.act = TSR__ACT_SILU;
        CHECK_OK(tsr__linear_load(w, "fc1", D, FF, 0, &b.fc1, &err), &err);
        CHECK_OK(tsr__linear_load(w, "gate", D, FF, 0, &b.gate, &err), &err);
        CHECK_OK(tsr__linear_load(w, "fc2", FF, D, 0, &b.fc2, &err), &err);
        const float *ga = NULL, *gm = NULL;
        CHECK_OK(tsr__weights_vec(w, "gate_attn", 1, &ga, &err), &err);
        CHECK_OK(tsr__weights_vec(w, "gate_mlp", 1, &gm, &err), &err);
        if (!ga || !gm) goto done;
        b.has_gates = 1;
        b.gate_attn = tanhf(ga[0]);
        b.gate_mlp = tanhf(gm[0]);
        tsr_tensor kv;
        CHECK_OK(tsr_safetensors_get(st, "key_valid", &kv, &err), &err);
        o.mask.key_valid = kv.data;
        o.mask.add = f32(st, "add");
    } else {
        b.act = qwen ? TSR__ACT_GELU : TSR__ACT_QUICK_GELU;
        CHECK_OK(tsr__linear_load(w, "fc1", D, FF, 1, &b.fc1, &err), &err);
        CHECK_OK(tsr__linear_load(w, "fc2", FF, D, 1, &b.fc2, &err), &err);
    }
    if (qwen) {
        o.rope_cos = f32(st, "rope_cos");
        o.rope_sin = f32(st, "rope_sin");
        tsr_tensor sg;
        CHECK_OK(tsr_safetensors_get(st, "seg", &sg, &err), &err);
        o.mask.seg = sg.data;
        o.mask.n_seg = sg.shape[0] - 1;
    }
    float x[13 * 32];
    const float *x0 = f32(st, "x"), *y = f32(st, "y");
    CHECK(x0 && y);
    if (!x0 || !y) goto done;
    memcpy(x, x0, sizeof x);
    tsr__pool *pool = threads > 1 ? tsr__pool_new(threads) : NULL;
    CHECK_OK(tsr__vit_block_run(pool, &b, x, T, &o, &err), &err);
    tsr__pool_free(pool);
    float md = 0;
    for (int64_t i = 0; i < T * D; i++) md = fmaxf(md, fabsf(x[i] - y[i]));
    printf("  %s (%d threads): max abs diff %.3g\n", name, (int)threads, md);
    CHECK_MSG(md <= 1e-5f, "%s: max abs diff %g", name, md);
done:
    tsr__weights_free(w);
    tsr_test_close_safetensors(st);
}

static void test_blocks(void) {
    static const char *const names[] = {"clip", "qwen", "pixtral"};
    for (int i = 0; i < 3; i++) {
        run_block(names[i], 1);
        run_block(names[i], 3);
    }
}

static void test_bad_weights(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/clip.safetensors", tsr_test_fixture("vit"));
    tsr_safetensors *st = NULL;
    tsr_error err = {0};
    CHECK_OK(tsr_test_open_safetensors(path, &st, &err), &err);
    if (!st) return;
    tsr__weights *w = NULL;
    CHECK_OK(tsr__weights_new(&st, NULL, 1, &w, &err), &err);
    tsr__linear l;
    CHECK(tsr__linear_load(w, "nope", 32, 32, 1, &l, &err) == TSR_ERR_FORMAT);
    CHECK(strstr(err.message, "nope.weight") != NULL);
    CHECK(tsr__linear_load(w, "q", 32, 33, 1, &l, &err) == TSR_ERR_SHAPE);
    CHECK(strstr(err.message, "[32, 32]") && strstr(err.message, "[33, 32]"));
    CHECK_OK(tsr__linear_load(w, "k", 32, 32, 1, &l, &err), &err);
    CHECK(tsr__linear_load(w, "k", 32, 32, 1, &l, &err) == TSR_ERR_FORMAT); /* used twice */
    const char *pre[] = {"k.", "v."};
    CHECK(tsr__weights_check_unused(w, pre, 2, "test", &err) == TSR_ERR_FORMAT);
    CHECK(strstr(err.message, "'v.") != NULL);
    tsr__act a;
    CHECK(tsr__act_parse("relu6", "vision_config.hidden_act", &a, &err) == TSR_ERR_UNSUPPORTED);
    tsr__weights_free(w);
    tsr_test_close_safetensors(st);
}

/* The vectorised activations against libm over [-12, 12]. */
static void test_activations(void) {
    enum { N = 24001 };
    static float x[N];
    for (tsr__act a = TSR__ACT_GELU; a <= TSR__ACT_SILU; a++) {
        for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (N - 1);
        tsr__pool *pool = tsr__pool_new(2);
        tsr__act_apply(pool, a, x, N);
        tsr__pool_free(pool);
        double md = 0;
        for (int i = 0; i < N; i++) {
            double v = -12.0f + 24.0f * (float)i / (N - 1);
            double ref = a == TSR__ACT_GELU ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                         : a == TSR__ACT_GELU_TANH
                             ? 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)))
                         : a == TSR__ACT_QUICK_GELU ? v / (1 + exp(-1.702 * v))
                                                    : v / (1 + exp(-v));
            double d = fabs(x[i] - ref) / (1.0 + fabs(ref));
            if (d > md) md = d;
        }
        printf("  activation %d: max relative error %.3g\n", (int)a, md);
        CHECK_MSG(md < 1e-6, "activation %d: %g", (int)a, md);
    }
}

int main(void) {
    tsr_test_run("activations", test_activations);
    tsr_test_run("blocks", test_blocks);
    tsr_test_run("bad weights", test_bad_weights);
    return tsr_test_finish();
}
