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

/* Reads a whole file (at most max_bytes; 0 = no limit) into a malloc'd buffer. */
tsr_status tsr_cli_read_file(const char *path, uint64_t max_bytes, uint8_t **data, size_t *len,
                             tsr_error *err);

/* Prints j unformatted on one line and deletes it. */
void tsr_cli_print_json_line(cJSON *j);

#endif
