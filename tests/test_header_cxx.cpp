// The public header used from C++: it must compile with a C++ compiler and its functions
// must link with C linkage.
#include "tessera.h"

#include <cstdio>
#include <cstring>

int main() {
    tsr_error err = {};
    tsr_tensor t;
    int64_t shape[2] = {2, 3};
    int failed = 0;
    if (tsr_tensor_alloc(&t, TSR_DTYPE_F32, 2, shape, &err) != TSR_OK) failed++;
    if (tsr_tensor_numel(&t) != 6) failed++;
    tsr_tensor_free(&t);
    if (std::strcmp(tsr_status_name(TSR_ERR_SHAPE), "TSR_ERR_SHAPE") != 0) failed++;
    tsr_image_decode_params p = tsr_image_decode_params_default();
    if (p.channels != 3) failed++;
    // Multimodal prompts and conversations: NULL handles are typed errors or no-ops.
    if (tsr_model_processor(nullptr) != nullptr || tsr_model_media_kinds(nullptr) != 0) failed++;
    tsr_prompt *prompt = nullptr;
    if (tsr_prompt_new(nullptr, nullptr, nullptr, &prompt, &err) != TSR_ERR_INVALID_ARG) failed++;
    if (tsr_prompt_input(prompt) != nullptr || tsr_prompt_tensors(prompt) != nullptr) failed++;
    tsr_decode_input in = tsr_decode_input_default();
    if (tsr_prompt_input_from(prompt, 0, &in, &err) != TSR_ERR_INVALID_ARG) failed++;
    if (tsr_prompt_image_ms(prompt) != 0.0 || tsr_prompt_audio_ms(prompt) != 0.0) failed++;
    tsr_prompt_free(prompt);
    tsr_chat *chat = nullptr;
    tsr_session_params sp = tsr_session_params_default();
    if (tsr_chat_new(nullptr, &sp, &chat, &err) != TSR_ERR_INVALID_ARG || chat) failed++;
    tsr_chat_part parts[] = {{TSR_CHAT_PART_TEXT, "hello", nullptr}};
    tsr_chat_message msg = {"user", nullptr, parts, 1};
    if (tsr_chat_add(chat, &msg, nullptr, 0, &err) != TSR_ERR_INVALID_ARG) failed++;
    tsr_generate_params gp = tsr_generate_params_default();
    char *text = nullptr;
    tsr_token_ids ids = {};
    tsr_usage usage = {};
    if (tsr_chat_generate(chat, &gp, &text, &ids, &usage, &err) != TSR_ERR_INVALID_ARG) failed++;
    if (tsr_chat_n_messages(chat) != 0 || tsr_chat_session(chat) != nullptr) failed++;
    tsr_chat_reset(chat);
    tsr_chat_free(chat);
    std::printf("%d passed, %d failed\n", failed ? 0 : 1, failed ? 1 : 0);
    return failed ? 1 : 0;
}
