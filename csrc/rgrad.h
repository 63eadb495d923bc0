/* rgrad.h: the C side of rgrad for C compilers; the declarations themselves
   live in rgrad.cdef.h, which cffi also reads. */
#ifndef RGRAD_H
#define RGRAD_H

#include <stdint.h>

#include "rgrad.cdef.h"

#endif
