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
   Each worker has a condition variable of its own, and a call wakes only the
   workers it gives a job; a worker polls only after a job of its own, so
   workers a call does not need stay asleep. (POOL_SPIN counts pause
   instructions, not time: about 100 us on the machines here; a pause takes
   from about ten to a hundred and forty cycles on x86-64 CPUs.)
   Workers never exit: between calls they wait, using no CPU, and end with
   the process. On Linux each is named rgrad-pool (in top, gdb, /proc).
   Threads started here block every signal but those a fault raises, so
   that signals reach the threads the program runs (Python's handlers run
   on its main thread anyway) and a crash still reaches the process's
   handlers. In a forked child the workers do not exist:
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
    rg_cond done;             /* the last job handed out is done */
    int busy;                 /* a call is using the workers */
    int off;                  /* no fork handler: workers are not used */
    volatile uint64_t gen;    /* generation of the jobs below (polled: rg_load_u64) */
    int32_t started;          /* workers 1 .. started */
    int32_t njobs;            /* workers 1 .. njobs - 1 have a job */
    volatile int32_t pending; /* of those, not done yet (polled: rg_load_i32) */
    void (*fn)(void *);
    void **args;
} P = { .lock = RG_MUTEX_INIT, .done = RG_COND_INIT };

/* Each worker: what it is started with (its number, and the generation it
   has already seen: it runs only jobs of later ones), and its own condition
   variable, so that a call wakes only the workers it gives a job. */
static struct {
    rg_thread_job job;
    int32_t k;
    uint64_t seen;
    rg_cond wake;
} workers[POOL_MOST];

static void worker_main(void *arg)
{
    int32_t k = ((int32_t *)arg)[0];
#ifdef __linux__
    (void)prctl(PR_SET_NAME, "rgrad-pool", 0, 0, 0);
#endif
    rg_mutex_lock(&P.lock);
    uint64_t seen = workers[k].seen;
    int ran = 0;                /* it had a job in the generation it saw last */
    for (;;) {
        if (rg_load_u64(&P.gen) == seen) {
            if (ran) {          /* the next call may come soon: poll first */
                rg_mutex_unlock(&P.lock);
                for (int i = 0; i < POOL_SPIN && rg_load_u64(&P.gen) == seen; i++)
                    rg_spin_pause();
                rg_mutex_lock(&P.lock);
            }
            while (rg_load_u64(&P.gen) == seen)
                rg_cond_wait(&workers[k].wake, &P.lock);
        }
        seen = rg_load_u64(&P.gen);
        ran = k < P.njobs;
        if (ran) {
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

/* Starts a thread for job, with every signal blocked but those a fault
   raises (a crash in it then still reaches the process's handlers:
   faulthandler, a sanitizer's report). 0 if it could not be started. */
static int start_thread(rg_thread *t, rg_thread_job *job)
{
#ifdef _WIN32
    return rg_thread_start(t, job) == 0;
#else
    sigset_t mask, old;
    sigfillset(&mask);
    static const int faults[] = {
        SIGSEGV, SIGBUS, SIGFPE, SIGILL,
#ifdef SIGTRAP
        SIGTRAP,
#endif
#ifdef SIGSYS
        SIGSYS,
#endif
    };
    for (size_t i = 0; i < sizeof faults / sizeof *faults; i++)
        sigdelset(&mask, faults[i]);
    pthread_sigmask(SIG_SETMASK, &mask, &old);
    int ok = rg_thread_start(t, job) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return ok;
#endif
}

/* Starts worker k, which will run the jobs of generations after this one
   (called with the pool's mutex held). 0 if it could not be started. */
static int start_worker(int32_t k)
{
    rg_cond cond = RG_COND_INIT;
    workers[k].k = k;
    workers[k].seen = rg_load_u64(&P.gen);
    workers[k].wake = cond;
    workers[k].job = (rg_thread_job){ .fn = worker_main, .arg = &workers[k].k };
    rg_thread t;
    int ok = start_thread(&t, &workers[k].job);
    if (ok) rg_thread_detach(t);
    return ok;
}

/* The jobs on threads started for them, joined before it returns (a job
   whose thread could not be started runs here, as do any past POOL_MOST). */
static void run_fresh(void (*fn)(void *), void **args, int32_t n)
{
    rg_thread th[POOL_MOST];
    rg_thread_job job[POOL_MOST];
    int started[POOL_MOST] = { 0 };
    int32_t m = n < POOL_MOST ? n : POOL_MOST;
    for (int32_t t = 1; t < m; t++) {
        job[t] = (rg_thread_job){ .fn = fn, .arg = args[t] };
        started[t] = start_thread(&th[t], &job[t]);
    }
    fn(args[0]);
    for (int32_t t = 1; t < n; t++) {
        if (t < m && started[t]) rg_thread_join(th[t]);
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
            for (int32_t t = 1; t <= given; t++)
                rg_cond_signal(&workers[t].wake);
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
/* Around fork(): the pool's mutex is taken first, so that the child does not
   copy it halfway through a change; the child then starts afresh, as its
   workers do not exist (its condition variables may have had waiters). */
static void pool_prepare(void) { rg_mutex_lock(&P.lock); }
static void pool_parent(void) { rg_mutex_unlock(&P.lock); }

static void pool_child(void)
{
    rg_mutex lock = RG_MUTEX_INIT;
    rg_cond cond = RG_COND_INIT;
    P.lock = lock;
    P.done = cond;
    P.busy = 0;
    P.started = P.njobs = 0;
    P.pending = 0;
}

RG_ON_LOAD static void register_pool_fork_handler(void)
{
    if (rg_at_fork(pool_prepare, pool_parent, pool_child) != 0)
        P.off = 1;
}
#endif
