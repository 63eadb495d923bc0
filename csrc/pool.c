/* pool.c: the worker threads batched replay runs its blocks on (pool.h).

   Worker k (1 <= k < POOL_MOST) runs job k of each call that has one. A
   call publishes its jobs under the pool's mutex with a new generation
   number and wakes the workers; each worker that has a job runs it without
   the mutex, then counts it done; the caller runs job 0, then waits until
   every job it handed out is done. Only one call at a time uses the
   workers (`busy`): a call that finds them taken (another thread's call
   holds them) starts threads of its own for its jobs, and joins them.

   Waking a thread that sleeps costs tens of microseconds here (on a virtual
   machine's idle core, about as much as starting a thread), so neither side
   sleeps at once: a worker that has run its job polls for the next call's
   jobs for POOL_SPIN turns (a hundred microseconds or so: a training loop's
   forward, backward and next forward come sooner) and the caller polls for
   its workers to finish, before each waits on a condition variable.
   Workers never exit: between calls they wait, using no CPU, and end with
   the process. On Linux each is named rgrad-pool (in top, gdb, /proc). They
   block every signal, so
   that signals reach the threads the program runs (Python's handlers run
   on its main thread anyway). In a forked child the workers do not exist:
   the child starts with an empty pool and makes new ones when a call needs
   them (should the handler that resets it fail to register, the workers
   are never used, and each call starts threads of its own). */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L     /* pthread_sigmask, under -std=c11 */
#include <signal.h>
#endif
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <stddef.h>

#include "platform.h"
#include "pool.h"

#define POOL_SPIN 4096         /* turns of polling before sleeping */

static struct {
    rg_mutex lock;
    rg_cond wake;             /* a new generation of jobs */
    rg_cond done;             /* the last job handed out is done */
    int busy;                 /* a call is using the workers */
    int off;                  /* no fork handler: workers are not used */
    volatile uint64_t gen;    /* generation of the jobs below (polled: rg_load_u64) */
    int32_t started;          /* workers 1 .. started */
    int32_t njobs;            /* workers 1 .. njobs - 1 have a job */
    volatile int32_t pending; /* of those, not done yet (polled: rg_load_i32) */
    void (*fn)(void *);
    void **args;
} P = { .lock = RG_MUTEX_INIT, .wake = RG_COND_INIT, .done = RG_COND_INIT };

/* what each worker is started with: its number, and the generation it has
   already seen (it runs only jobs of later ones) */
static struct {
    rg_thread_job job;
    int32_t k;
    uint64_t seen;
} workers[POOL_MOST];

static void worker_main(void *arg)
{
    int32_t k = ((int32_t *)arg)[0];
#ifdef __linux__
    (void)prctl(PR_SET_NAME, "rgrad-pool", 0, 0, 0);
#endif
    rg_mutex_lock(&P.lock);
    uint64_t seen = workers[k].seen;
    for (;;) {
        if (rg_load_u64(&P.gen) == seen) {
            rg_mutex_unlock(&P.lock);
            for (int i = 0; i < POOL_SPIN && rg_load_u64(&P.gen) == seen; i++)
                rg_spin_pause();
            rg_mutex_lock(&P.lock);
            while (rg_load_u64(&P.gen) == seen)
                rg_cond_wait(&P.wake, &P.lock);
        }
        seen = rg_load_u64(&P.gen);
        if (k < P.njobs) {
            void (*fn)(void *) = P.fn;
            void *a = P.args[k];
            rg_mutex_unlock(&P.lock);
            fn(a);
            rg_mutex_lock(&P.lock);
            rg_store_i32(&P.pending, rg_load_i32(&P.pending) - 1);
            if (rg_load_i32(&P.pending) == 0) rg_cond_signal(&P.done);
        }
    }
}

/* Starts worker k, which will run the jobs of generations after this one
   (called with the pool's mutex held). 0 if it could not be started. */
static int start_worker(int32_t k)
{
    workers[k].k = k;
    workers[k].seen = rg_load_u64(&P.gen);
    workers[k].job = (rg_thread_job){ .fn = worker_main, .arg = &workers[k].k };
    rg_thread t;
#ifdef _WIN32
    int ok = rg_thread_start(&t, &workers[k].job) == 0;
#else
    sigset_t all, old;              /* the thread starts with every signal blocked */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int ok = rg_thread_start(&t, &workers[k].job) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#endif
    if (ok) rg_thread_detach(t);
    return ok;
}

/* The jobs on threads started for them, joined before it returns (a job
   whose thread could not be started runs here). */
static void run_fresh(void (*fn)(void *), void **args, int32_t n)
{
    rg_thread th[POOL_MOST];
    rg_thread_job job[POOL_MOST];
    int started[POOL_MOST] = { 0 };
    for (int32_t t = 1; t < n; t++) {
        job[t] = (rg_thread_job){ .fn = fn, .arg = args[t] };
        started[t] = rg_thread_start(&th[t], &job[t]) == 0;
    }
    fn(args[0]);
    for (int32_t t = 1; t < n; t++) {
        if (started[t]) rg_thread_join(th[t]);
        else fn(args[t]);
    }
}

void pool_run(void (*fn)(void *), void **args, int32_t n)
{
    int mine = 0;                  /* this call has the workers */
    int32_t given = 0;             /* jobs 1 .. given go to workers */
    if (n <= 1) {
        if (n == 1) fn(args[0]);
        return;
    }
    rg_mutex_lock(&P.lock);
    if (!P.busy && !P.off) {
        mine = P.busy = 1;
        while (P.started < n - 1 && P.started < POOL_MOST - 1 && start_worker(P.started + 1))
            P.started++;
        given = n - 1 < P.started ? n - 1 : P.started;
        if (given > 0) {
            P.fn = fn;
            P.args = args;
            P.njobs = given + 1;
            rg_store_i32(&P.pending, given);
            rg_store_u64(&P.gen, rg_load_u64(&P.gen) + 1);   /* last: a polling worker sees all above */
            rg_cond_broadcast(&P.wake);
        }
    }
    rg_mutex_unlock(&P.lock);
    if (!mine) {
        run_fresh(fn, args, n);
        return;
    }
    fn(args[0]);
    for (int32_t t = given + 1; t < n; t++)    /* the jobs no worker took */
        fn(args[t]);
    for (int i = 0; i < POOL_SPIN && rg_load_i32(&P.pending) > 0; i++)
        rg_spin_pause();
    rg_mutex_lock(&P.lock);
    while (rg_load_i32(&P.pending) > 0)
        rg_cond_wait(&P.done, &P.lock);
    P.busy = 0;
    rg_mutex_unlock(&P.lock);
}

#if RG_HAVE_FORK
static void pool_child(void)
{
    rg_mutex lock = RG_MUTEX_INIT;
    rg_cond cond = RG_COND_INIT;
    P.lock = lock;
    P.wake = P.done = cond;
    P.busy = 0;
    P.started = P.njobs = 0;
    P.pending = 0;
}

RG_ON_LOAD static void register_pool_fork_handler(void)
{
    if (rg_at_fork(NULL, NULL, pool_child) != 0)
        P.off = 1;
}
#endif
