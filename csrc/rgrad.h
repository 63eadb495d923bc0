/* rgrad.h: the C side of rgrad for C compilers; the declarations themselves
   live in rgrad.cdef.h, which cffi also reads. */
#ifndef RGRAD_H
#define RGRAD_H

#include <stdint.h>

#include "rgrad.cdef.h"

/* How a thread waits for the arena's lock when another holds it: the module
   sets it (csrc/gil.h) to wait without the GIL, so that a call that keeps
   the GIL does not stop every Python thread while another thread's long
   call runs. rg_blocking(fn, arg) must call fn(arg) once. */
extern void (*rg_blocking)(void (*fn)(void *), void *arg);

#endif
