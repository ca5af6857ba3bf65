/* layer: cluster */
/* The cluster bus against a real Redis (FLOE_TEST_REDIS, a unix:// or redis://
 * URL; the test fails without it): publish and receive on every channel, the
 * protobuf envelope round trip, and drops while disconnected. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/bus.h"
#include "proto/bus/bus.pb-c.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int got_mailbox, got_invalidate;
static long long last_modseq;
static char last_key[64], last_origin[64];

static void on_bus(enum bus_channel ch, const uint8_t *data, size_t len, void *arg)
{
    Floe__Bus__Envelope *env = floe__bus__envelope__unpack(NULL, len, data);
    if (!env)
        return;
    pthread_mutex_lock(&lock);
    snprintf(last_origin, sizeof(last_origin), "%s", env->origin_node);
    if (ch == BUS_MAILBOX && env->body_case == FLOE__BUS__ENVELOPE__BODY_MAILBOX) {
        got_mailbox++;
        last_modseq = env->mailbox->modseq;
    } else if (ch == BUS_INVALIDATE && env->body_case == FLOE__BUS__ENVELOPE__BODY_INVALIDATE) {
        got_invalidate++;
        snprintf(last_key, sizeof(last_key), "%s", env->invalidate->key);
    }
    pthread_mutex_unlock(&lock);
    floe__bus__envelope__free_unpacked(env, NULL);
}

static bool wait_for(int *counter, int want)
{
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&lock);
        int v = *counter;
        pthread_mutex_unlock(&lock);
        if (v >= want)
            return true;
        usleep(10000);
    }
    return false;
}

static void test_roundtrip(void **state)
{
    const char *url = getenv("FLOE_TEST_REDIS");
    if (!url || !*url)
        fail_msg("FLOE_TEST_REDIS is not set: run through ops/test");
    assert_int_equal(bus_subscribe(BUS_MAILBOX, on_bus, NULL), 0);
    assert_int_equal(bus_subscribe(BUS_INVALIDATE, on_bus, NULL), 0);
    /* not started: publishing is refused and counted */
    assert_int_equal(bus_publish_invalidate(0, "x"), -1);
    char err[256];
    struct bus_config bad = {.url = "http://nope"};
    assert_int_equal(bus_start(&bad, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "expected redis://"));

    struct bus_config cfg = {.url = url, .node_id = "unit-node"};
    assert_int_equal(bus_start(&cfg, err, sizeof(err)), 0);
    for (int i = 0; i < 500 && !bus_connected(); i++)
        usleep(10000);
    assert_true(bus_connected());
    assert_int_equal(bus_publish_mailbox(7, 9, 12345, 1), 0);
    assert_int_equal(bus_publish_invalidate(0, "alice@example.test"), 0);
    assert_true(wait_for(&got_mailbox, 1));
    assert_true(wait_for(&got_invalidate, 1));
    assert_int_equal(last_modseq, 12345);
    assert_string_equal(last_key, "alice@example.test");
    assert_string_equal(last_origin, "unit-node");
    for (int i = 0; i < 100; i++)
        bus_publish_mailbox(1, 1, i, 2);
    assert_true(wait_for(&got_mailbox, 101));
    struct bus_stats st;
    bus_get_stats(&st);
    assert_true(st.connected);
    assert_true(st.published >= 102);
    assert_true(st.received >= 102);
    assert_true(st.dropped >= 1);
    bus_stop();
    assert_false(bus_connected());
    assert_int_equal(bus_publish_invalidate(0, "y"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
