/* Upstream balancing (http/upstream.h): Unit's smooth weighted round robin
 * sequences, least connections, power of two choices, consistent hashing
 * (only the keys of a server that leaves move), max_conns and passive
 * health.  Peers are process-wide, so each test uses its own ports. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "http/upstream.h"
#include "http/upstream_peer.h"
#include "unit.h"

#define UT_MAX 8

typedef struct ut_up {
    wf_upstream_t u;
    wf_upstream_server_t servers[UT_MAX];
    char names[UT_MAX][32];
} ut_up_t;

/* An upstream of n servers 127.0.0.1:port0+i with weights w (NULL: 1),
 * balanced by b. */
static void
ut_up_init(ut_up_t *t, size_t n, unsigned port0, const double *w,
           wf_upstream_balance_t b)
{
    double ones[UT_MAX];

    memset(t, 0, sizeof(*t));
    wf_upstream_init(&t->u);
    t->u.servers = t->servers;
    t->u.nservers = n;
    t->u.balance = b;
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&t->servers[i].addr;

        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)(port0 + i));
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        t->servers[i].addrlen = sizeof(*sin);
        snprintf(t->names[i], sizeof(t->names[i]), "127.0.0.1:%u",
                 (unsigned)(port0 + i));
        t->servers[i].name = t->names[i];
        ones[i] = 1.0;
    }
    wf_upstream_weights(&t->u, w != NULL ? w : ones);
    assert_int_equal(wf_upstream_compile(&t->u), WF_OK);
}

static size_t
ut_index(const ut_up_t *t, const wf_upstream_server_t *s)
{
    assert_non_null(s);
    return (size_t)(s - t->servers);
}

/* n picks, each given back at once; the servers as letters a, b, ... */
static void
ut_sequence(ut_up_t *t, char *out, size_t n)
{
    wf_upstream_none_t why;

    for (size_t i = 0; i < n; i++) {
        wf_upstream_server_t *s = wf_upstream_pick(&t->u, 0, &why);

        out[i] = (char)('a' + ut_index(t, s));
        wf_upstream_done(&t->u, s, false);
    }
    out[n] = '\0';
}

/* The sequences measured on Unit 1.35 (as in test_proxy.py). */
static void
test_upstream_rr_unit_sequences(void **state)
{
    static const double w1[] = {3, 1, 0};
    static const double w2[] = {2, 1, 1};
    ut_up_t t;
    char seq[16];

    (void)state;
    ut_up_init(&t, 3, 41000, w1, WF_UPSTREAM_ROUND_ROBIN);
    ut_sequence(&t, seq, 8);
    assert_string_equal(seq, "abaaabaa");
    wf_upstream_fini(&t.u);
    ut_up_init(&t, 3, 41010, w2, WF_UPSTREAM_ROUND_ROBIN);
    ut_sequence(&t, seq, 8);
    assert_string_equal(seq, "abcaabca");
    wf_upstream_fini(&t.u);
}

/* A server that is down gets nothing; all down is ALL_DOWN; no weight
 * at all is NO_WEIGHT (Unit's 502). */
static void
test_upstream_down_skipped(void **state)
{
    static const double zero[] = {0, 0};
    ut_up_t t;
    char seq[16];
    wf_upstream_none_t why = 0;

    (void)state;
    ut_up_init(&t, 3, 41020, NULL, WF_UPSTREAM_ROUND_ROBIN);
    atomic_store(&t.servers[1].peer->down_until, wf_upstream_now_ms() + 60000);
    ut_sequence(&t, seq, 6);
    assert_null(strchr(seq, 'b'));
    atomic_store(&t.servers[0].peer->check_down, true);
    atomic_store(&t.servers[2].peer->check_down, true);
    assert_null(wf_upstream_pick(&t.u, 0, &why));
    assert_int_equal(why, WF_UPSTREAM_ALL_DOWN);
    atomic_store(&t.servers[0].peer->check_down, false);
    atomic_store(&t.servers[2].peer->check_down, false);
    atomic_store(&t.servers[1].peer->down_until, 0);
    wf_upstream_fini(&t.u);

    ut_up_init(&t, 2, 41030, zero, WF_UPSTREAM_ROUND_ROBIN);
    assert_null(wf_upstream_pick(&t.u, 0, &why));
    assert_int_equal(why, WF_UPSTREAM_NO_WEIGHT);
    wf_upstream_fini(&t.u);
}

/* Held connections steer least_conn, in proportion to the weights. */
static void
test_upstream_least_conn(void **state)
{
    static const double w[] = {2, 1};
    wf_upstream_server_t *held[6];
    wf_upstream_none_t why;
    unsigned count[2] = {0, 0};
    ut_up_t t;
    char seq[16];

    (void)state;
    ut_up_init(&t, 2, 41040, w, WF_UPSTREAM_LEAST_CONN);
    for (size_t i = 0; i < 6; i++) {
        held[i] = wf_upstream_pick(&t.u, 0, &why);
        count[ut_index(&t, held[i])]++;
    }
    assert_int_equal(count[0], 4);
    assert_int_equal(count[1], 2);
    /* b finishes its two: the next two go to b, the emptier per weight. */
    for (size_t i = 0; i < 6; i++) {
        if (ut_index(&t, held[i]) == 1) {
            wf_upstream_done(&t.u, held[i], false);
            held[i] = NULL;
        }
    }
    ut_sequence(&t, seq, 1);
    assert_string_equal(seq, "b");
    for (size_t i = 0; i < 6; i++) {
        if (held[i] != NULL) {
            wf_upstream_done(&t.u, held[i], false);
        }
    }
    /* Idle servers: ties go by weighted round robin. */
    ut_sequence(&t, seq, 6);
    count[0] = count[1] = 0;
    for (size_t i = 0; i < 6; i++) {
        count[seq[i] - 'a']++;
    }
    assert_int_equal(count[0], 4);
    assert_int_equal(count[1], 2);
    wf_upstream_fini(&t.u);
}

/* Two random choices: a loaded server loses against an idle one; idle
 * servers are drawn in proportion to their weights. */
static void
test_upstream_random_two(void **state)
{
    static const double w[] = {3, 1};
    wf_upstream_none_t why;
    wf_upstream_server_t *held[5];
    unsigned count[3] = {0, 0, 0};
    ut_up_t t;

    (void)state;
    ut_up_init(&t, 2, 41050, w, WF_UPSTREAM_RANDOM_TWO);
    for (size_t i = 0; i < 4000; i++) {
        wf_upstream_server_t *s = wf_upstream_pick(&t.u, 0, &why);

        count[ut_index(&t, s)]++;
        wf_upstream_done(&t.u, s, false);
    }
    /* Both draws are taken and the tie goes to the first: P(a) = 3/4. */
    assert_in_range(count[0], 2600, 3400);
    wf_upstream_fini(&t.u);

    ut_up_init(&t, 3, 41060, NULL, WF_UPSTREAM_RANDOM_TWO);
    for (size_t i = 0; i < 5; i++) {
        held[i] = &t.servers[0];
        atomic_fetch_add(&t.servers[0].peer->active, 1);
    }
    count[0] = count[1] = count[2] = 0;
    for (size_t i = 0; i < 300; i++) {
        wf_upstream_server_t *s = wf_upstream_pick(&t.u, 0, &why);

        count[ut_index(&t, s)]++;
        wf_upstream_done(&t.u, s, false);
    }
    /* a is drawn with another each time, and always loses. */
    assert_int_equal(count[0], 0);
    for (size_t i = 0; i < 5; i++) {
        wf_upstream_done(&t.u, held[i], false);
    }
    wf_upstream_fini(&t.u);
}

#define UT_KEYS 10000

static size_t
ut_hash_pick(ut_up_t *t, unsigned k)
{
    char key[32];
    wf_upstream_none_t why;
    wf_upstream_server_t *s;
    int n = snprintf(key, sizeof(key), "10.0.%u.%u", k / 256, k % 256);

    s = wf_upstream_pick(&t->u, wf_upstream_key_hash(key, (size_t)n), &why);
    assert_non_null(s);
    wf_upstream_done(&t->u, s, false);
    return (size_t)atoi(strchr(s->name, ':') + 1);
}

/* A key keeps its server; when one of 5 servers leaves (removed from the
 * config, or down), only its keys (about 1/5) move. */
static void
test_upstream_hash_minimal_remap(void **state)
{
    static size_t before[UT_KEYS];
    ut_up_t t5, t4;
    unsigned on_gone = 0, moved = 0;

    (void)state;
    ut_up_init(&t5, 5, 41070, NULL, WF_UPSTREAM_HASH);
    for (unsigned k = 0; k < UT_KEYS; k++) {
        before[k] = ut_hash_pick(&t5, k);
        assert_int_equal(ut_hash_pick(&t5, k), before[k]);
    }
    /* The same servers but 41072 (a new snapshot keeps the peers). */
    ut_up_init(&t4, 5, 41070, NULL, WF_UPSTREAM_HASH);
    t4.servers[2] = t4.servers[4];
    memcpy(t4.names[2], t4.names[4], sizeof(t4.names[2]));
    t4.servers[2].name = t4.names[2];
    t4.u.nservers = 4;
    for (unsigned k = 0; k < UT_KEYS; k++) {
        size_t now = ut_hash_pick(&t4, k);

        on_gone += before[k] == 41072;
        if (now != before[k]) {
            moved++;
            assert_int_equal(before[k], 41072);
        }
    }
    assert_int_equal(moved, on_gone);
    assert_in_range(moved, UT_KEYS / 5 - UT_KEYS / 20,
                    UT_KEYS / 5 + UT_KEYS / 20);
    /* Down instead of removed: the same keys move. */
    atomic_store(&t5.servers[2].peer->check_down, true);
    for (unsigned k = 0; k < UT_KEYS; k++) {
        size_t now = ut_hash_pick(&t5, k);

        assert_true(now == before[k] || before[k] == 41072);
        assert_true(now != 41072);
    }
    atomic_store(&t5.servers[2].peer->check_down, false);
    wf_upstream_fini(&t5.u);
    wf_upstream_fini(&t4.u);
}

/* max_conns: a full server is passed over; all full is ALL_FULL. */
static void
test_upstream_max_conns(void **state)
{
    wf_upstream_none_t why = 0;
    wf_upstream_server_t *a, *b;
    ut_up_t t;

    (void)state;
    ut_up_init(&t, 2, 41080, NULL, WF_UPSTREAM_ROUND_ROBIN);
    t.servers[0].max_conns = 1;
    t.servers[1].max_conns = 1;
    a = wf_upstream_pick(&t.u, 0, &why);
    b = wf_upstream_pick(&t.u, 0, &why);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_null(wf_upstream_pick(&t.u, 0, &why));
    assert_int_equal(why, WF_UPSTREAM_ALL_FULL);
    wf_upstream_done(&t.u, a, false);
    assert_ptr_equal(wf_upstream_pick(&t.u, 0, &why), a);
    wf_upstream_done(&t.u, a, false);
    wf_upstream_done(&t.u, b, false);
    wf_upstream_fini(&t.u);
}

/* Passive health: max_fails failures within the window mark the server
 * down (a new snapshot with the same address sees it down too); fewer,
 * or spread wider than the window, do not. */
static void
test_upstream_passive(void **state)
{
    wf_upstream_passive_t ps = {3, 1000, 60000};
    wf_upstream_none_t why = 0;
    uint64_t now = wf_upstream_now_ms();
    ut_up_t t, again;

    (void)state;
    ut_up_init(&t, 1, 41090, NULL, WF_UPSTREAM_ROUND_ROBIN);
    t.servers[0].passive = ps;
    assert_false(wf_upstream_peer_fail(t.servers[0].peer, &ps, now - 2400));
    assert_false(wf_upstream_peer_fail(t.servers[0].peer, &ps, now - 1800));
    assert_false(wf_upstream_peer_fail(t.servers[0].peer, &ps, now - 1200));
    assert_int_equal(wf_upstream_peer_health(t.servers[0].peer, now),
                     WF_UPSTREAM_UP);
    for (int i = 0; i < 3; i++) {
        wf_upstream_server_t *s = wf_upstream_pick(&t.u, 0, &why);

        wf_upstream_done(&t.u, s, true);
    }
    assert_null(wf_upstream_pick(&t.u, 0, &why));
    assert_int_equal(why, WF_UPSTREAM_ALL_DOWN);
    ut_up_init(&again, 1, 41090, NULL, WF_UPSTREAM_ROUND_ROBIN);
    assert_ptr_equal(again.servers[0].peer, t.servers[0].peer);
    assert_null(wf_upstream_pick(&again.u, 0, &why));
    atomic_store(&t.servers[0].peer->down_until, 0);
    assert_non_null(wf_upstream_pick(&again.u, 0, &why));
    wf_upstream_done(&again.u, &again.servers[0], false);
    wf_upstream_fini(&t.u);
    wf_upstream_fini(&again.u);
}

int
wf_test_upstream(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upstream_rr_unit_sequences),
        cmocka_unit_test(test_upstream_down_skipped),
        cmocka_unit_test(test_upstream_least_conn),
        cmocka_unit_test(test_upstream_random_two),
        cmocka_unit_test(test_upstream_hash_minimal_remap),
        cmocka_unit_test(test_upstream_max_conns),
        cmocka_unit_test(test_upstream_passive),
    };

    return cmocka_run_group_tests_name("upstream", tests, NULL, NULL);
}
