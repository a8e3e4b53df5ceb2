/* tessera - command-line front end. Uses only the public header. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tessera <command> [options]\n"
            "\n"
            "commands:\n"
            "  info [--json] [--ppm OUT] FILE...   decode media files and describe them\n"
            "  tokenize --model DIR (-p TEXT | --messages FILE.json) [--no-special] [--json]\n"
            "                                      text or a chat to token ids\n"
            "  detokenize --model DIR [--skip-special] [--json] ID...\n"
            "                                      token ids to text\n"
            "  preprocess --model DIR [--image F]... [--audio F]... (-p TEXT | --messages F)\n"
            "             [--no-template] --out OUT.safetensors\n"
            "                                      the processor's tensors, as transformers\n"
            "  run --model DIR [--image F]... [--audio F]... -p TEXT [--system TEXT]\n"
            "      [--temp T] [--top-p P] [--top-k K] [--seed S] [--max-tokens N]\n"
            "      [--threads N] [--json]\n"
            "                                      one user turn, the reply streamed\n"
            "  chat --model DIR [sampling flags as run] [--verbose]\n"
            "                                      a conversation on stdin / stdout\n"
            "  serve --model DIR [--host H] [--port N] [--parallel N] [--api-key KEY] ...\n"
            "                                      OpenAI-compatible HTTP server (docs/server.md)\n"
            "\n"
            "exit codes: 0 success, 1 runtime failure, 2 usage error\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "info")) return tsr_cli_info(argc - 1, argv + 1);
    if (!strcmp(argv[1], "tokenize")) return tsr_cli_tokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "detokenize")) return tsr_cli_detokenize(argc - 1, argv + 1);
    if (!strcmp(argv[1], "preprocess")) return tsr_cli_preprocess(argc - 1, argv + 1);
    if (!strcmp(argv[1], "run")) return tsr_cli_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve")) return tsr_cli_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "chat")) return tsr_cli_chat(argc - 1, argv + 1);
    fprintf(stderr, "tessera: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
