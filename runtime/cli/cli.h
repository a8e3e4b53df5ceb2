/* Shared helpers of the tessera command-line front end. */
#ifndef TSR_CLI_H
#define TSR_CLI_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "tessera.h"

int tsr_cli_info(int argc, char **argv);
int tsr_cli_tokenize(int argc, char **argv);
int tsr_cli_detokenize(int argc, char **argv);
int tsr_cli_preprocess(int argc, char **argv);
int tsr_cli_run(int argc, char **argv);
int tsr_cli_chat(int argc, char **argv);
int tsr_cli_serve(int argc, char **argv); /* serve.c */

/* Reads a whole file (at most max_bytes; 0 = no limit) into a malloc'd buffer. */
tsr_status tsr_cli_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                             tsr_error *err);

/* Prints j unformatted on one line and deletes it. */
void tsr_cli_print_json_line(cJSON *j);

/* Generation flags shared by run and chat: --temp, --top-p, --top-k, --min-p,
 * --repeat-penalty, --seed, --max-tokens, --threads, --ctx. At argv[*i]: returns 1 and
 * advances *i past the value when it took the flag, 0 when argv[*i] is not one of them,
 * -1 when the value is missing or invalid. *set collects the sampling settings given. */
int tsr_cli_gen_flag(int argc, char **argv, int *i, tsr_generate_params *gp,
                     tsr_session_params *sp, unsigned *set);
/* The model's sampling defaults (generation_config.json, as generate() applies them) for
 * every setting the command line did not give. */
void tsr_cli_model_sampling(const tsr_model *model, tsr_sampling_params *sp, unsigned set);
/* Usage lines of those flags. */
extern const char tsr_cli_gen_flags_usage[];

/* Reads a media file given with --image / --audio (or /image, /audio in chat) for model:
 * INVALID_ARG when its bytes are of the other kind or the model takes no such media (usage
 * errors, exit code 2), otherwise the read / header errors. *data is freed with free(). */
tsr_status tsr_cli_read_media(const tsr_model *model, const char *path, tsr_media_kind kind,
                              uint8_t **data, size_t *len, tsr_error *err);

/* tsr_model_load with a progress line on stderr when it is a terminal. */
tsr_status tsr_cli_load_model(const char *dir, tsr_model **model, tsr_error *err);

/* The user message of run / chat: one IMAGE / AUDIO part per media item, in their order, then
 * the text (plain content when there is no media). parts holds n_media + 1 entries. */
tsr_chat_message tsr_cli_user_message(const char *text, const tsr_media *media, size_t n_media,
                                      tsr_chat_part *parts);

/* Exit code of a failed call: 2 for INVALID_ARG (a usage error), else 1. */
int tsr_cli_exit_code(tsr_status st);

/* "eos", "stop", "length", "cancelled" or "none". */
const char *tsr_cli_stop_name(tsr_stop_reason r);

#endif
