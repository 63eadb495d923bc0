/* ops.h: every op's forward value and local derivatives (step), and the int
   bits that follow micrograd's Python ints. Included by rgrad.c (node by node:
   making, backward, replay) and tape.c (replay's fused chains, which must give
   these same bits). */
#ifndef RGRAD_OPS_H
#define RGRAD_OPS_H

#include <math.h>

#include "arena.h"

enum { FWD, BWD };

/* x ** k with the errors Python's float ** raises (a negative base with a
   fractional exponent is ValueError here, where Python would go complex). */
static inline int pow_checked(double x, double k, double *out)
{
    if (isfinite(x) && isfinite(k)) {
        if (x == 0.0 && k < 0.0)
            return RG_EZERODIV;
        if (x < 0.0 && k != floor(k))
            return RG_EDOMAIN;
        *out = pow(x, k);
        return isinf(*out) ? RG_EOVERFLOW : RG_OK;
    }
    *out = pow(x, k);  /* C99 Annex F special cases: the same as Python's */
    return RG_OK;
}

/* 1 / (1 + e^-x), taking exp of -|x| only: no overflow, exact 0 and 1 far out */
static inline double sigmoid(double x)
{
    double e = exp(-fabs(x));
    return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* The int bits (arena.h), kept without branches. In forward, idata(z, k)
   sets z's F_IDATA to k's (its data is an int in micrograd) and its F_IGRAD
   (forward zeroes grads: micrograd's int 0). unsign(z) drops the sign of an
   int zero, as an int has none (0 * -1 is 0 in micrograd, -0.0 in doubles).
   In backward, share(z, k) is the mask that each child ANDs into its flags:
   what z passes on is an int iff z's grad is one and k's F_IGRAD bit is set
   (micrograd's grad stays an int only while every contribution is one). */
/* Whether an int micrograd would hold as v is one a double holds exactly
   (below 2**53 in size): past that, an int rgrad computed or was given has
   been rounded, and it is a float from then on. NaN is none. */
static inline int exact_int(double v)
{
    return fabs(v) < 0x1p53;
}

static inline void idata(rg_node *z, unsigned k)
{
    if ((k & F_IDATA) && !exact_int(z->data)) k = 0;   /* rounded: a float now */
    z->flags = (uint8_t)((z->flags & ~(unsigned)F_IDATA) | F_IGRAD | (k & F_IDATA));
}

static inline void unsign(rg_node *z)
{
    z->data += (z->flags & F_IDATA) ? 0.0 : -0.0;   /* x + -0.0 is x, even -0.0 */
}

static inline uint8_t share(const rg_node *z, unsigned k)
{
    return (uint8_t)((z->flags & k) | ~(unsigned)F_IGRAD);
}

#define ALL 0xffu           /* share(z, ALL): z's grad passes on as it is */
#define NONE 0u             /* a float in micrograd, whatever z's grad */
#define DATA_AS_GRAD(n) ((unsigned)(n)->flags << 1)   /* F_IDATA at F_IGRAD */
#define ARG_AS_GRAD(z) ((unsigned)(z)->flags >> 1)    /* F_IARG at F_IGRAD */
#define ARG_AS_DATA(z) ((unsigned)(z)->flags >> 2)    /* F_IARG at F_IDATA */

/* One op, one case: its forward value (dir == FWD) and its local derivatives
   (dir == BWD). x and y are the children, z the node itself, dz its grad.
   Backward only adds into children (and clears their F_IGRAD where what it
   adds is not an int in micrograd). */
RG_ALWAYS_INLINE int step(rg_node *nodes, rg_node *z, int dir)
{
    rg_node *x = z->a >= 0 ? &nodes[z->a] : NULL;
    rg_node *y = z->b >= 0 ? &nodes[z->b] : NULL;
    double c = z->arg, dz = z->grad;
    int rc;

    switch (z->op) {
    case RG_LEAF:   /* its data is set from Python; nothing flows further */
    case RG_LINK:   /* carries a Python op's third and later children */
        return RG_OK;
    case RG_PY:     /* an op defined in Python: Python runs it (rg_run stops here) */
        return dir == FWD ? RG_EPYOP : RG_OK;
    case RG_ADD:    /* z = x + y;  dx += dz, dy += dz */
        if (dir == FWD) {
            z->data = x->data + y->data;
            idata(z, x->flags & y->flags);
        } else {
            uint8_t m = share(z, ALL);
            x->grad += dz; x->flags &= m;
            y->grad += dz; y->flags &= m;
        }
        return RG_OK;
    case RG_MUL:    /* z = x * y;  dx += y dz, dy += x dz */
        if (dir == FWD) {
            z->data = x->data * y->data;
            idata(z, x->flags & y->flags);
            unsign(z);
        } else {
            uint8_t mx = share(z, DATA_AS_GRAD(y)), my = share(z, DATA_AS_GRAD(x));
            x->grad += y->data * dz; x->flags &= mx;
            y->grad += x->data * dz; y->flags &= my;
        }
        return RG_OK;
    case RG_ADDC:   /* z = x + c;  dx += dz */
        if (dir == FWD) {
            z->data = x->data + c;
            idata(z, x->flags & ARG_AS_DATA(z));
        } else {
            x->grad += dz; x->flags &= share(z, ALL);
        }
        return RG_OK;
    case RG_MULC:   /* z = x * c;  dx += c dz */
        if (dir == FWD) {
            z->data = x->data * c;
            idata(z, x->flags & ARG_AS_DATA(z));
            unsign(z);
        } else {
            x->grad += c * dz; x->flags &= share(z, ARG_AS_GRAD(z));
        }
        return RG_OK;
    case RG_NEG:    /* z = -x;  dx += -dz  (micrograd's x * -1) */
        if (dir == FWD) {
            z->data = -x->data;
            idata(z, x->flags);
            unsign(z);
        } else {
            x->grad += -dz; x->flags &= share(z, ALL);
        }
        return RG_OK;
    case RG_POWU:   /* z = x ** c, unchecked (in gradient graphs); backward as RG_POW's */
        if (dir == FWD) {
            z->data = pow(x->data, c);
            idata(z, NONE);
            return RG_OK;
        }
        /* fall through */
    case RG_POW:    /* z = x ** c;  dx += (c x**(c-1)) dz */
        if (dir == FWD) {       /* an int ** an int >= 0 is an int in Python */
            rc = pow_checked(x->data, c, &z->data);
            idata(z, c >= 0.0 ? x->flags & ARG_AS_DATA(z) : NONE);
            return rc;
        }
        x->grad += (c * pow(x->data, c - 1.0)) * dz;
        x->flags &= share(z, z->op == RG_POW && c >= 1.0 ? DATA_AS_GRAD(x) & ARG_AS_GRAD(z)
                                                         : NONE);
        return RG_OK;
    case RG_RELU:   /* z = x < 0 ? 0 : x;  dx += [z > 0] dz */
        if (dir == FWD) {       /* micrograd's 0 is an int */
            z->data = x->data < 0.0 ? 0.0 : x->data;
            idata(z, x->data < 0.0 ? F_IDATA : x->flags);
        } else {
            x->grad += (z->data > 0.0 ? 1.0 : 0.0) * dz; x->flags &= share(z, ALL);
        }
        return RG_OK;
    case RG_TANH:   /* z = tanh x;  dx += (1 - z^2) dz */
        if (dir == FWD) {
            z->data = tanh(x->data);
            idata(z, NONE);
        } else {
            x->grad += (1.0 - z->data * z->data) * dz; x->flags &= share(z, NONE);
        }
        return RG_OK;
    case RG_EXP:    /* z = e^x;  dx += z dz */
        if (dir == FWD) {
            z->data = exp(x->data);
            idata(z, NONE);
            if (isinf(z->data) && isfinite(x->data)) return RG_EOVERFLOW;
        } else {
            x->grad += z->data * dz; x->flags &= share(z, NONE);
        }
        return RG_OK;
    case RG_LNZ:    /* z = ln x, 0 at 0 (unchecked: NaN below); backward as RG_LOG's */
        if (dir == FWD) {
            z->data = x->data == 0.0 ? 0.0 : log(x->data);
            idata(z, NONE);
            return RG_OK;
        }
        /* fall through */
    case RG_LOG:    /* z = ln x;  dx += dz / x */
        if (dir == FWD) {
            if (x->data <= 0.0) return RG_EDOMAIN;
            z->data = log(x->data);
            idata(z, NONE);
        } else {
            x->grad += dz / x->data; x->flags &= share(z, NONE);
        }
        return RG_OK;
    case RG_SIGMOID:  /* z = 1 / (1 + e^-x);  dx += z (1 - z) dz */
        if (dir == FWD) {
            z->data = sigmoid(x->data);
            idata(z, NONE);
        } else {
            x->grad += z->data * (1.0 - z->data) * dz; x->flags &= share(z, NONE);
        }
        return RG_OK;
    case RG_SOFTPLUS:  /* z = ln(1 + e^x) = max(x, 0) + ln(1 + e^-|x|);  dx += sigmoid(x) dz */
        if (dir == FWD) {
            z->data = (x->data > 0.0 ? x->data : 0.0) + log1p(exp(-fabs(x->data)));
            idata(z, NONE);
        } else {
            x->grad += sigmoid(x->data) * dz; x->flags &= share(z, NONE);
        }
        return RG_OK;
    case RG_POWVU:  /* z = x ** y, unchecked (in gradient graphs); backward as RG_POWV's */
        if (dir == FWD) {
            z->data = pow(x->data, y->data);
            idata(z, NONE);
            return RG_OK;
        }
        /* fall through */
    case RG_POWV:   /* z = x ** y;  dx += (y x**(y-1)) dz,  dy += (z ln x) dz */
        if (dir == FWD) {
            rc = pow_checked(x->data, y->data, &z->data);
            idata(z, y->data >= 0.0 ? x->flags & y->flags : NONE);
            return rc;
        }
        x->grad += (y->data * pow(x->data, y->data - 1.0)) * dz;
        x->flags &= share(z, z->op == RG_POWV && y->data >= 1.0
                                 ? DATA_AS_GRAD(x) & DATA_AS_GRAD(y) : NONE);
        /* 0 ** y for y >= 0 has no slope in y that log could give: 0, as in PyTorch */
        if (!(x->data == 0.0 && y->data >= 0.0)) {
            y->grad += (z->data * log(x->data)) * dz;
            y->flags &= share(z, NONE);
        }
        return RG_OK;
    case RG_STEP:   /* z = [x > 0] (relu's derivative);  its own derivative is 0 */
        if (dir == FWD) {
            z->data = x->data > 0.0 ? 1.0 : 0.0;
            idata(z, NONE);
        }
        return RG_OK;
    case RG_RPOWC:  /* z = c ** x;  dx += (z ln c) dz */
        if (dir == FWD) {
            rc = pow_checked(c, x->data, &z->data);
            idata(z, x->data >= 0.0 ? x->flags & ARG_AS_DATA(z) : NONE);
            return rc;
        }
        if (!(c == 0.0 && x->data >= 0.0)) {
            x->grad += (z->data * log(c)) * dz;
            x->flags &= share(z, NONE);
        }
        return RG_OK;
    }
    return RG_EHANDLE;  /* unreachable: op codes are set only in this file */
}

#endif
