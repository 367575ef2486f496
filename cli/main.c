/*  main - the `lmpress` program: resolve the subcommand from the table and run it */
#include "cli/cli.h"
#include "cli/commands.h"    /* defines: the lmp_cli_cmd_* entries */
#include "kernels/kernels.h" /* defines: lmp_kernels_blas_better_core */

#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct lmp_cli_cmd *const cmds[] = {LMP_CLI_COMMANDS};
enum { N_CMDS = sizeof(cmds) / sizeof(cmds[0]) };

static void print_help(FILE *f) {
    fprintf(f,
            "lmpress %s: compress large language models to ~2 bits per weight (AQLM)\n\n"
            "usage: lmpress <command> [options]\n\ncommands:\n",
            LMP_VERSION);
    for (int i = 0; i < N_CMDS; i++) fprintf(f, "  %-12s %s\n", cmds[i]->name, cmds[i]->summary);
    fprintf(f, "\n'lmpress help <command>' or 'lmpress <command> --help' shows a command's\n"
               "options, their defaults and meaning.\n"
               "'--key FILE --server-key FILE' (CURVE keys) go with worker, submit, status,\n"
               "logs, cancel and workers.\n"
               "exit codes: 0 ok, 1 failed, 2 usage, 3 coordinator unreachable, 4 input rejected,\n"
               "            5 key refused by the coordinator\n");
}

/* The commands that connect to a coordinator as a worker or client, and so take the key
 * options --key FILE / --server-key FILE (docs/cli.md, "Remote deployment"). */
static bool takes_keys(const char *name) {
    static const char *const peers[] = {"worker", "submit", "status", "cancel", "workers", "logs"};
    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++)
        if (strcmp(peers[i], name) == 0) return true;
    return false;
}

static const struct lmp_cli_cmd *find(const char *name) {
    for (int i = 0; i < N_CMDS; i++)
        if (strcmp(cmds[i]->name, name) == 0) return cmds[i];
    return NULL;
}

int main(int argc, char **argv) {
    /* OpenBLAS picked weaker kernels than this CPU runs: load it again with the right ones */
    const char *core = lmp_kernels_blas_better_core();
    if (core && setenv("OPENBLAS_CORETYPE", core, 1) == 0) {
        execv("/proc/self/exe", argv);
        unsetenv("OPENBLAS_CORETYPE"); /* no re-execution: go on as loaded */
    }
    if (argc < 2) {
        print_help(stderr);
        return LMP_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        if (argc >= 3 && find(argv[2])) {
            lmp_cli_print_help(find(argv[2]), stdout);
            return LMP_EXIT_OK;
        }
        if (argc >= 3) {
            fprintf(stderr, "lmpress: '%s' is not a command; see 'lmpress help'\n", argv[2]);
            return LMP_EXIT_USAGE;
        }
        print_help(stdout);
        return LMP_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("lmpress %s\n", LMP_VERSION);
        return LMP_EXIT_OK;
    }
    const struct lmp_cli_cmd *cmd = find(name);
    if (cmd == NULL) {
        fprintf(stderr, "lmpress: '%s' is not a command; see 'lmpress help'\n", name);
        return LMP_EXIT_USAGE;
    }
    /* every command answers --help / -h, wherever it stands before "--" */
    if (lmp_cli_wants_help(argc - 1, argv + 1)) {
        lmp_cli_print_help(cmd, stdout);
        return LMP_EXIT_OK;
    }
    struct lmp_cli cli      = {.json = false, .tty = isatty(STDERR_FILENO) != 0};
    int            sub_argc = argc - 1;
    if (takes_keys(name) && lmp_cli_take_key_options(&sub_argc, argv + 1) != LMP_EXIT_OK)
        return LMP_EXIT_USAGE;
    optind = 1;
    return cmd->exec(&cli, sub_argc, argv + 1);
}
