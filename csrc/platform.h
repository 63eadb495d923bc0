/* platform.h: what rgrad's C core needs from the compiler and the OS, spelled
   once for each: the arena's mutex, thread-local storage, forced inlining and
   the fork handlers. GCC and Clang on POSIX (Linux, macOS) take the pthread
   branch; Windows (MSVC, or MinGW's GCC) takes the _WIN32 branch. Compiler
   spellings follow the compiler (_MSC_VER), the mutex follows the OS.

   rg_mutex        a non-recursive mutex, statically initialised with
                   RG_MUTEX_INIT; rg_mutex_lock / rg_mutex_trylock / rg_mutex_unlock.
   RG_THREAD_LOCAL a storage class for one variable per thread.
   RG_ALWAYS_INLINE for a function the hot loops must not call through.
   rg_thread       a thread running job->fn(job->arg): rg_thread_start (0 on
                   success) and rg_thread_join.
   RG_HAVE_FORK    1 where a process can fork (POSIX), 0 on Windows;
                   rg_at_fork(prepare, parent, child) registers handlers
                   (pthread_atfork), and RG_ON_LOAD marks a function to run
                   as the library loads; both are absent without fork. */
#ifndef RGRAD_PLATFORM_H
#define RGRAD_PLATFORM_H

#ifdef _MSC_VER
#define RG_THREAD_LOCAL __declspec(thread)
#define RG_ALWAYS_INLINE static __forceinline
#else
#define RG_THREAD_LOCAL _Thread_local
#define RG_ALWAYS_INLINE static inline __attribute__((always_inline))
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

#define RG_ON_LOAD __attribute__((constructor))

static inline int rg_at_fork(void (*prepare)(void), void (*parent)(void), void (*child)(void))
{
    return pthread_atfork(prepare, parent, child);
}

#endif

#endif
