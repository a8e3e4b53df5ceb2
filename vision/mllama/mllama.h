/*
 * mllama.h - MLlama (Llama 3.2 Vision) helpers beyond the family contract. Internal.
 */
#ifndef TSR_VISION_MLLAMA_H
#define TSR_VISION_MLLAMA_H

#include "family.h"

/* MllamaProcessor's build_string_from_input: a prompt that does not contain bos_token gets
 * it inserted after its leading run of image_token strings ("<|image|><|image|>x" ->
 * "<|image|><|image|><|begin_of_text|>x"); otherwise it is copied unchanged.
 * *out (NUL-terminated, tsr__malloc'd) is released with tsr__free. */
tsr_status tsr__mllama_build_prompt(const char *prompt, const char *bos_token,
                                    const char *image_token, char **out /* OUT */,
                                    tsr_error *err);


#endif
