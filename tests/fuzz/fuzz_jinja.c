/* libFuzzer target: the chat-template parser and renderer. The input is template text; it is
 * rendered over a small fixed conversation with tight limits, so loops and output stay short. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "../../text/jinja.h"

static const char VARS[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": \"text\", \"text\": \"Hi\"}]},"
    " {\"role\": \"assistant\", \"content\": \"Hello\"}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\","
    " \"tools\": null}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static cJSON *vars;
    if (!vars) vars = cJSON_Parse(VARS);
    tsr_error err = {0};
    tsr__jinja_template *t = NULL;
    if (tsr__jinja_parse((const char *)data, size, &t, &err) != TSR_OK) return 0;
    tsr__jinja_render_opts opts = {tsr__jinja_limits_default(), 1700000000};
    opts.limits.max_steps = 200000;
    opts.limits.max_output = 1 << 20;
    opts.limits.max_memory = 64u << 20;
    char *out = NULL;
    size_t len = 0;
    if (tsr__jinja_render(t, vars, &opts, &out, &len, &err) == TSR_OK) tsr__free(out);
    tsr__jinja_free(t);
    return 0;
}
