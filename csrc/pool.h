/* pool.h: worker threads kept between calls (pool.c); not part of the API. */
#ifndef RGRAD_POOL_H
#define RGRAD_POOL_H

#include <stdint.h>

#include "platform.h"

#define POOL_MOST 64           /* jobs in one call, the caller's among them */

/* Runs fn(args[t]) for each t < n, job 0 on the calling thread and the
   others on worker threads, and returns once all have run. Workers are
   started on first need and then wait for the next call, so that a call
   costs a wake-up instead of a thread's start and end (tens of
   microseconds here). While another caller's jobs hold the workers, a
   call starts threads of its own and joins them. A job no thread can take
   (one could not be started, or it is past POOL_MOST) runs on the calling
   thread; which thread runs a job changes nothing it computes. */
RG_INTERNAL void pool_run(void (*fn)(void *), void **args, int32_t n);

#endif
