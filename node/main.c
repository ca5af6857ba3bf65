/* floed: the Floe node daemon. Reads the node bootstrap file, then runs every
 * enabled service until SIGTERM. Exit status: 0 clean stop, 1 runtime failure,
 * 2 bad configuration or start-up failure (nothing was served). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node/config.h"
#include "node/registry.h"
#include "node/server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: floed [--config FILE] [--check-config] [--port-offset N] [--version]\n"
               "  --config FILE     node bootstrap file (default /etc/floe/floed.conf)\n"
               "  --check-config    validate the file and exit (0 valid, 2 invalid)\n"
               "  --port-offset N   add N to every listening port\n"
               "  --endpoints       print one '<label> <url>' line per listener and exit\n");
}

/* Listeners as URLs a local client can use: wildcard addresses become loopback. */
static void print_endpoints(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->nservices; i++) {
        const struct service_config *sc = &cfg->services[i];
        const struct service_def *def = registry_find(sc->name);
        for (size_t j = 0; sc->enabled && j < sc->nlisten; j++) {
            const struct listen_addr *a = &sc->listen[j];
            if (a->wildcard6)
                continue;
            char host[80];
            snprintf(host, sizeof(host), "%s", a->text);
            if (!strncmp(host, "0.0.0.0:", 8))
                snprintf(host, sizeof(host), "127.0.0.1:%s", a->text + 8);
            else if (!strncmp(host, "[::]:", 5))
                snprintf(host, sizeof(host), "[::1]:%s", a->text + 5);
            printf("%s %s://%s\n", a->tls ? def->label_tls : def->label,
                   a->tls ? def->scheme_tls : def->scheme, host);
        }
    }
}

int main(int argc, char **argv)
{
    const char *path = "/etc/floe/floed.conf";
    int check = 0, endpoints = 0, offset = -1;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"check-config", no_argument, NULL, 'k'},
                                         {"port-offset", required_argument, NULL, 'p'},
                                         {"endpoints", no_argument, NULL, 'e'},
                                         {"version", no_argument, NULL, 'V'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:kp:eVh", opts, NULL)) != -1) {
        switch (ch) {
        case 'e':
            endpoints = 1;
            break;
        case 'c':
            path = optarg;
            break;
        case 'k':
            check = 1;
            break;
        case 'p': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || v < 0 || v > 65535) {
                fprintf(stderr, "floed: --port-offset: expected 0 to 65535\n");
                return 2;
            }
            offset = (int)v;
            break;
        }
        case 'V':
            printf("floed %s\n", FLOE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    struct config *cfg = config_load(path, offset, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "floed: %s\n", err);
        return 2;
    }
    if (endpoints) {
        print_endpoints(cfg);
        config_free(&cfg);
        return 0;
    }
    if (check) {
        printf("%s: configuration is valid\n", path);
        config_free(&cfg);
        return 0;
    }
    registry_init();
    server_set_port_offset_override(offset);
    return server_run(cfg);
}
