/* tessera info: decode media files and describe them. */
#include <stdio.h>

#include "cli.h"

int tsr_cli_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "tessera info: %s\n", tsr_status_str(TSR_ERR_UNSUPPORTED));
    return 1;
}
