/* I/O threads: one libuv loop per thread (DESIGN §3). A session lives on one loop
 * for its whole life; other threads (workers, the main thread) never touch its
 * handles and instead post a callback to the loop with loop_post(). */
#ifndef FLOE_NODE_LOOP_H
#define FLOE_NODE_LOOP_H

#include <stdbool.h>
#include <uv.h>

struct io_loop;

typedef void (*loop_fn)(void *arg);

/* Runs fn(arg) on loop's thread as soon as possible. Safe from any thread.
 * 0 ok, -1 out of memory (fn is not called). */
int loop_post(struct io_loop *l, loop_fn fn, void *arg);

/* Outstanding work that will post back to this loop keeps it running: call
 * loop_work_begin() on the loop's thread before handing work to another thread
 * and loop_work_end() on the loop's thread when its completion has run. */
void loop_work_begin(struct io_loop *l);
void loop_work_end(struct io_loop *l);

/* On the loop's thread, at stop: from now on the loop ends when nothing is left. */
void loop_end_keepalive(struct io_loop *l);

/* The libuv loop of an io_loop (use only on its own thread). */
uv_loop_t *loop_uv(struct io_loop *l);
/* The io_loop of the calling thread, NULL on a thread that is not an I/O thread. */
struct io_loop *loop_current(void);
/* The loop's shared read buffer: sessions on one loop read into it in turn, so an
 * idle connection holds no buffer of its own. */
char *loop_read_buffer(struct io_loop *l, size_t *len_r);

/* Used by the server: create, run on a new thread, and free. */
struct io_loop *loop_new(int index);
/* Starts the loop's thread: setup(l, arg) runs on it first, then the loop runs
 * until nothing is left to do, then done(l, arg) runs on it (either may be NULL). */
int loop_start(struct io_loop *l, void (*setup)(struct io_loop *l, void *arg),
               void (*done)(struct io_loop *l, void *arg), void *arg);
void loop_join(struct io_loop *l);
void loop_free(struct io_loop **l);
int loop_index(const struct io_loop *l);

#endif
