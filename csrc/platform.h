/* platform.h: what rgrad's C core needs from the compiler and the OS, spelled
   once for each: the arena's mutex, thread-local storage, forced inlining and
   the fork handlers. GCC and Clang on POSIX (Linux, macOS) take the pthread
   branch; Windows (MSVC, or MinGW's GCC) takes the _WIN32 branch. Compiler
   spellings follow the compiler (_MSC_VER), the mutex follows the OS.

   rg_mutex        a non-recursive mutex, statically initialised with
                   RG_MUTEX_INIT; rg_mutex_lock / rg_mutex_trylock / rg_mutex_unlock.
   RG_THREAD_LOCAL a storage class for one variable per thread.
   RG_ALWAYS_INLINE for a function the hot loops must not call through.
   RG_INTERNAL     for a function the C files share that the library does
                   not export.
   rg_load_i32 / rg_store_i32, rg_load_u64 / rg_store_u64: a read that
                   acquires and a write that releases (atomic), for a value
                   one thread polls while others change it; rg_spin_pause()
                   for each turn of such a polling loop.
   rg_cond         a condition variable, statically initialised with
                   RG_COND_INIT: rg_cond_wait (with an rg_mutex held) and
                   rg_cond_signal.
   rg_thread       a thread running job->fn(job->arg): rg_thread_start (0 on
                   success) and rg_thread_join, or rg_thread_detach for one
                   that is never joined.
   RG_HAVE_FORK    1 where a process can fork (POSIX), 0 on Windows;
                   rg_at_fork(prepare, parent, child) registers handlers
                   (pthread_atfork), and RG_ON_LOAD marks a function to run
                   as the library loads; both are absent without fork. */
#ifndef RGRAD_PLATFORM_H
#define RGRAD_PLATFORM_H

/* Shared between the C files, and kept out of the shared library's exported
   symbols (where a name could be taken by another library's). */
#if defined(__GNUC__) && !defined(_WIN32)
#define RG_INTERNAL __attribute__((visibility("hidden")))
#else
#define RG_INTERNAL
#endif

#ifdef _MSC_VER
#define RG_THREAD_LOCAL __declspec(thread)
#define RG_ALWAYS_INLINE static __forceinline
#else
#define RG_THREAD_LOCAL _Thread_local
#define RG_ALWAYS_INLINE static inline __attribute__((always_inline))
#endif

#include <stdint.h>

#ifdef _MSC_VER
#include <intrin.h>
/* the Interlocked calls are full barriers: more than acquire or release asks */
static inline int32_t rg_load_i32(volatile int32_t *p)
{
    return (int32_t)_InterlockedCompareExchange((volatile long *)p, 0, 0);
}
static inline void rg_store_i32(volatile int32_t *p, int32_t v)
{
    _InterlockedExchange((volatile long *)p, (long)v);
}
static inline uint64_t rg_load_u64(volatile uint64_t *p)
{
    return (uint64_t)_InterlockedCompareExchange64((volatile __int64 *)p, 0, 0);
}
static inline void rg_store_u64(volatile uint64_t *p, uint64_t v)
{
#ifdef _M_IX86      /* (no _InterlockedExchange64 on 32-bit x86) */
    __int64 old = (__int64)*p, seen;
    while ((seen = _InterlockedCompareExchange64((volatile __int64 *)p, (__int64)v, old)) != old)
        old = seen;
#else
    _InterlockedExchange64((volatile __int64 *)p, (__int64)v);
#endif
}
#if defined(_M_X64) || defined(_M_IX86)
static inline void rg_spin_pause(void) { _mm_pause(); }
#else
static inline void rg_spin_pause(void) { __yield(); }
#endif
#else
static inline int32_t rg_load_i32(volatile int32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void rg_store_i32(volatile int32_t *p, int32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t rg_load_u64(volatile uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void rg_store_u64(volatile uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
#if defined(__x86_64__) || defined(__i386__)
static inline void rg_spin_pause(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__) || defined(__arm__)
static inline void rg_spin_pause(void) { __asm__ __volatile__("yield"); }
#else
static inline void rg_spin_pause(void) { }
#endif
#endif

typedef struct {
    void (*fn)(void *);
    void *arg;
} rg_thread_job;

#ifdef _WIN32

/* An SRWLOCK: one pointer, a static initialiser and no destruction, like a
   pthread mutex; taken exclusively it is a plain mutex (slim reader/writer
   locks exist since Vista). */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX          /* no min and max macros */
#endif
#include <windows.h>

typedef SRWLOCK rg_mutex;
#define RG_MUTEX_INIT SRWLOCK_INIT

static inline void rg_mutex_lock(rg_mutex *m) { AcquireSRWLockExclusive(m); }
static inline int rg_mutex_trylock(rg_mutex *m) { return TryAcquireSRWLockExclusive(m) != 0; }
static inline void rg_mutex_unlock(rg_mutex *m) { ReleaseSRWLockExclusive(m); }

typedef CONDITION_VARIABLE rg_cond;
#define RG_COND_INIT CONDITION_VARIABLE_INIT

static inline void rg_cond_wait(rg_cond *c, rg_mutex *m)
{
    SleepConditionVariableSRW(c, m, INFINITE, 0);
}
static inline void rg_cond_signal(rg_cond *c) { WakeConditionVariable(c); }

#define RG_HAVE_FORK 0   /* Windows starts processes afresh: nothing to hand over */

typedef HANDLE rg_thread;

static inline DWORD WINAPI rg_thread_main(LPVOID job)
{
    ((rg_thread_job *)job)->fn(((rg_thread_job *)job)->arg);
    return 0;
}

static inline int rg_thread_start(rg_thread *t, rg_thread_job *job)
{
    *t = CreateThread(NULL, 0, rg_thread_main, job, 0, NULL);
    return *t ? 0 : -1;
}

static inline void rg_thread_join(rg_thread t)
{
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}

static inline void rg_thread_detach(rg_thread t) { CloseHandle(t); }

#else

#include <pthread.h>

typedef pthread_mutex_t rg_mutex;
#define RG_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER

/* The mutex is default-initialised and only ever locked and unlocked in
   pairs by the thread that holds it: these cannot fail, so nothing is
   returned to check. */
static inline void rg_mutex_lock(rg_mutex *m) { pthread_mutex_lock(m); }
static inline int rg_mutex_trylock(rg_mutex *m) { return pthread_mutex_trylock(m) == 0; }
static inline void rg_mutex_unlock(rg_mutex *m) { pthread_mutex_unlock(m); }

typedef pthread_cond_t rg_cond;
#define RG_COND_INIT PTHREAD_COND_INITIALIZER

/* (waits may wake without a signal: callers wait in a loop on their own
   condition, as with any condition variable) */
static inline void rg_cond_wait(rg_cond *c, rg_mutex *m) { pthread_cond_wait(c, m); }
static inline void rg_cond_signal(rg_cond *c) { pthread_cond_signal(c); }

#define RG_HAVE_FORK 1

typedef pthread_t rg_thread;

static inline void *rg_thread_main(void *job)
{
    ((rg_thread_job *)job)->fn(((rg_thread_job *)job)->arg);
    return NULL;
}

static inline int rg_thread_start(rg_thread *t, rg_thread_job *job)
{
    return pthread_create(t, NULL, rg_thread_main, job);
}

static inline void rg_thread_join(rg_thread t)
{
    pthread_join(t, NULL);
}

static inline void rg_thread_detach(rg_thread t) { pthread_detach(t); }

#define RG_ON_LOAD __attribute__((constructor))

static inline int rg_at_fork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    return pthread_atfork(prepare, parent, child);
}

#endif

#endif
