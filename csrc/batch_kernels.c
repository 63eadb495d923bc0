/* batch_kernels.c: the loops over a block of rows of a batch (batch.c says
   how a batch is compiled and run): forward and backward of the vector
   program, one instruction at a time, each a loop over the block's rows. */
/* The loops over rows are written for the compiler to vectorize, which GCC
   does at -O3 (Clang does at -O2). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O3")
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

/* The block loops are built twice on x86-64 Linux with GCC: for AVX2 (4
   doubles a vector) and for the baseline (SSE2, 2), the one this CPU runs
   chosen when the library loads (an ifunc). Neither contracts a * b + c
   into one rounding (-ffp-contract=off, build_ffi.py: no FMA), so both give
   the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(RG_NO_CLONES)
#define BLOCK_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define BLOCK_KERNEL
#endif
/* what the block loops call, built into each of them (a function of its own
   would be built for the baseline only) */
#if defined(__GNUC__)
#define KERNEL_PART static inline __attribute__((always_inline))
#else
#define KERNEL_PART static inline
#endif

/* ---- the loops over a block ------------------------------------------------ */

/* x ** k with pow_checked's errors, one element; *bad collects them */
static inline double bpow(double x, double k, int *bad)
{
    if (isfinite(x) && isfinite(k)) {
        if (x == 0.0 && k < 0.0) { *bad = RG_EZERODIV; return NAN; }
        if (x < 0.0 && k != floor(k)) { *bad = RG_EDOMAIN; return NAN; }
        double r = pow(x, k);
        if (isinf(r)) *bad = RG_EOVERFLOW;
        return r;
    }
    return pow(x, k);
}

static inline double bsigmoid(double x)
{
    double e = exp(-fabs(x));
    return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

/* ---- four lanes ------------------------------------------------------------ */

/* Sums over a block's rows go in four lanes (row i in lane i % 4), added up
   in a fixed order: no thread count or instruction set changes them. GCC and
   Clang get the four lanes as one vector (vector_size), others as four
   doubles; the additions are the same. Macros, not functions: a vector
   passed by value to a function changes the ABI with the instruction set,
   which compilers warn of. */
#if defined(__GNUC__) && !defined(RG_NO_VECTOR_EXT)   /* (that: to test the other branch) */
typedef double lanes4 __attribute__((vector_size(32)));
#define L4_SPLAT(d, s) ((d) = (lanes4){ (s), (s), (s), (s) })
#define L4_ADD(d, a, b) ((d) = (a) + (b))
#define L4_MULADD(d, a, b, c) ((d) = (a) + (b) * (c))           /* two roundings */
#else
typedef struct { double e[4]; } lanes4;
#define L4_SPLAT(d, s)                                                       \
    do { double s_ = (s); for (int q_ = 0; q_ < 4; q_++) (d).e[q_] = s_; } while (0)
#define L4_ADD(d, a, b)                                                      \
    do { for (int q_ = 0; q_ < 4; q_++) (d).e[q_] = (a).e[q_] + (b).e[q_]; } while (0)
#define L4_MULADD(d, a, b, c)                                                \
    do {                                                                     \
        for (int q_ = 0; q_ < 4; q_++) (d).e[q_] = (a).e[q_] + (b).e[q_] * (c).e[q_]; \
    } while (0)
#endif
#define L4_LOAD(d, p) memcpy(&(d), (p), sizeof(lanes4))
#define L4_STORE(p, s) memcpy((p), &(s), sizeof(lanes4))
/* the four lanes' total, in the one order */
#define L4_TOTAL(r) (((r)[0] + (r)[1]) + ((r)[2] + (r)[3]))

/* The sum of a[0 .. m) over four lanes. */
KERNEL_PART double sum4(const double *restrict a, int32_t m)
{
    lanes4 l, x;
    double r[4];
    int32_t i = 0;
    L4_SPLAT(l, 0.0);
    for (; i + 4 <= m; i += 4) {
        L4_LOAD(x, a + i);
        L4_ADD(l, l, x);
    }
    L4_STORE(r, l);
    for (; i < m; i++) r[i & 3] += a[i];
    return L4_TOTAL(r);
}

/* The four-lane sum of a[i] * g[i], while g2[i] gets s * g[i] (stored where
   first, else added): one pass over g for `s * a` with s uniform, which
   passes both. */
KERNEL_PART double dot4_put(const double *restrict a, const double *restrict g,
                            double *g2, int first, double s, int32_t m)
{
    lanes4 l, x, y, o, s4, zero;
    double r[4];
    int32_t i = 0;
    L4_SPLAT(l, 0.0);
    L4_SPLAT(zero, 0.0);
    L4_SPLAT(s4, s);
    for (; i + 4 <= m; i += 4) {
        L4_LOAD(x, a + i);
        L4_LOAD(y, g + i);
        L4_MULADD(l, l, x, y);
        if (first) o = zero;
        else L4_LOAD(o, g2 + i);
        L4_MULADD(o, o, s4, y);
        L4_STORE(g2 + i, o);
    }
    L4_STORE(r, l);
    for (; i < m; i++) {
        r[i & 3] += a[i] * g[i];
        g2[i] = (first ? 0.0 : g2[i]) + s * g[i];
    }
    return L4_TOTAL(r);
}

/* ---- OP_DOT ------------------------------------------------------------------ */

/* A dot's loops take up to 16 rows at a time (K groups of four, K <= 4):
   their running sums (forward) or the dot's grad (backward) stay in
   registers while the loop goes over the terms, instead of a pass over the
   rows in memory for each term. Every row gets the same operations in the
   same order as a pass per term would give it (and the ops one by one), and
   every lane of a uniform's sum the same rows in the same order: the same
   bits (but for which NaN comes out where two NaNs meet, which the compiler
   chooses here as everywhere: a review's harness compared this code with
   the pass per term on 8.6 million random programs and found no other
   difference). The callers pass K as a constant, and the loops over k
   unroll. */

/* The dot z = ((start + w1 v1) + w2 v2) + ..., rows i .. i + 4K - 1: the
   start is x's rows, or xs. */
KERNEL_PART void dot_rows(const double *restrict D, const double *u, const term *tm,
                          int32_t nt, const double *x, double xs, double *z, int32_t stride,
                          int32_t i, int K)
{
    lanes4 acc[4], v, w;
    const double *vt = D + (int64_t)tm[0].v * stride + i;
    L4_SPLAT(w, u[tm[0].u]);
    for (int k = 0; k < K; k++) {
        lanes4 s;
        if (x) L4_LOAD(s, x + i + 4 * k);
        else L4_SPLAT(s, xs);
        L4_LOAD(v, vt + 4 * k);
        L4_MULADD(acc[k], s, w, v);
    }
    for (int32_t t = 1; t < nt; t++) {
        vt = D + (int64_t)tm[t].v * stride + i;
        L4_SPLAT(w, u[tm[t].u]);
        for (int k = 0; k < K; k++) {
            L4_LOAD(v, vt + 4 * k);
            L4_MULADD(acc[k], acc[k], w, v);
        }
    }
    for (int k = 0; k < K; k++) L4_STORE(z + i + 4 * k, acc[k]);
}

/* The dot in every row of the block. */
KERNEL_PART void dot_forward(const double *restrict D, const double *u, const term *tm,
                             int32_t nt, const double *x, double xs, double *z,
                             int32_t stride, int32_t m)
{
    int32_t i = 0;
    for (; i + 16 <= m; i += 16) dot_rows(D, u, tm, nt, x, xs, z, stride, i, 4);
    for (; i + 4 <= m; i += 4) dot_rows(D, u, tm, nt, x, xs, z, stride, i, 1);
    for (; i < m; i++) {
        double acc = (x ? x[i] : xs) + u[tm[0].u] * D[(int64_t)tm[0].v * stride + i];
        for (int32_t t = 1; t < nt; t++)
            acc = acc + u[tm[t].u] * D[(int64_t)tm[t].v * stride + i];
        z[i] = acc;
    }
}

/* One term's part of a dot's backward, rows i .. i + 4K - 1, y their grad:
   its lanes l (kept in memory from one group of rows to the next) += v * y,
   and its vector's grad g2 = (first ? 0 : g2) + w * y. */
KERNEL_PART void term_rows(const double *restrict D, double *restrict G, const double *u,
                           const term *tm, const lanes4 *y, double *l, int32_t stride,
                           int32_t i, int K)
{
    const double *v = D + (int64_t)tm->v * stride + i;
    double *g2 = G + (int64_t)tm->v * stride + i;
    lanes4 lane, x, w, o;
    L4_LOAD(lane, l);
    for (int k = 0; k < K; k++) {
        L4_LOAD(x, v + 4 * k);
        L4_MULADD(lane, lane, x, y[k]);
    }
    L4_STORE(l, lane);
    L4_SPLAT(w, u[tm->u]);
    for (int k = 0; k < K; k++) {
        if (tm->first) L4_SPLAT(o, 0.0);
        else L4_LOAD(o, g2 + 4 * k);
        L4_MULADD(o, o, w, y[k]);
        L4_STORE(g2 + 4 * k, o);
    }
}

/* The same, one row (row i, in lane i & 3). */
KERNEL_PART void term_row(const double *restrict D, double *restrict G, const double *u,
                          const term *tm, double y, double *l, int32_t stride, int32_t i)
{
    int64_t at = (int64_t)tm->v * stride + i;
    l[i & 3] += D[at] * y;
    G[at] = (tm->first ? 0.0 : G[at]) + u[tm->u] * y;
}

/* dot_backward (below), rows i .. i + 4K - 1. */
KERNEL_PART void dot_back_rows(const inst *in, const term *tm, const double *restrict D,
                               double *restrict G, const double *u, double *L,
                               int32_t stride, int32_t i, int K)
{
    const double *gz = G + (int64_t)in->z * stride + i;
    int32_t nt = in->nt;
    lanes4 y[4], zero, o;
    L4_SPLAT(zero, 0.0);
    for (int k = 0; k < K; k++) {
        L4_LOAD(o, gz + 4 * k);
        L4_ADD(y[k], zero, o);
    }
    for (int32_t t = nt - 1; t >= 1; t--) term_rows(D, G, u, &tm[t], y, L + 4 * t, stride, i, K);
    if (in->kx == VEC) {
        double *gx = G + (int64_t)in->x * stride + i;
        for (int k = 0; k < K; k++) {
            if (in->bwd & FIRST_X) o = zero;
            else L4_LOAD(o, gx + 4 * k);
            L4_ADD(o, o, y[k]);
            L4_STORE(gx + 4 * k, o);
        }
    } else {                                     /* the start's lanes */
        L4_LOAD(o, L + 4 * nt);
        for (int k = 0; k < K; k++) L4_ADD(o, o, y[k]);
        L4_STORE(L + 4 * nt, o);
    }
    term_rows(D, G, u, &tm[0], y, L, stride, i, K);
}

/* The backward of the dot `in` over a block of m rows, as the ops one by one
   would run it. Unfused, A_n passes its grad gz on, stored first (0 + gz)
   into A_(n-1) and M_n, and so on down: every M_t and A_t has grad
   y = 0 + gz. Then the multiplies' and the start's grads go in the order
   backward met them: M_n .. M_2, A_1's start, M_1; and the uniforms' sums
   get the rows' totals in that order too. L: 4 * (nt + 1) doubles, the
   terms' lanes and then the start's. */
KERNEL_PART void dot_backward(const inst *in, const term *tm, const double *restrict D,
                              double *restrict G, double *restrict P, const double *u,
                              double *L, int32_t stride, int32_t m)
{
    const double *gz = G + (int64_t)in->z * stride;
    int32_t nt = in->nt;
    int xv = in->kx == VEC, fx = in->bwd & FIRST_X;
    double *gx = xv ? G + (int64_t)in->x * stride : NULL;
    double *ls = L + 4 * nt;
    memset(L, 0, sizeof *L * 4 * (size_t)(nt + 1));
    int32_t i = 0;
    for (; i + 16 <= m; i += 16) dot_back_rows(in, tm, D, G, u, L, stride, i, 4);
    for (; i + 4 <= m; i += 4) dot_back_rows(in, tm, D, G, u, L, stride, i, 1);
    for (; i < m; i++) {
        double y = 0.0 + gz[i];
        for (int32_t t = nt - 1; t >= 1; t--) term_row(D, G, u, &tm[t], y, L + 4 * t, stride, i);
        if (xv) gx[i] = (fx ? 0.0 : gx[i]) + y;
        else ls[i & 3] += y;
        term_row(D, G, u, &tm[0], y, L, stride, i);
    }
    for (int32_t t = nt - 1; t >= 1; t--) P[tm[t].u] += L4_TOTAL(L + 4 * t);
    if (!xv) P[in->x] += L4_TOTAL(ls);
    P[tm[0].u] += L4_TOTAL(L);
}

/* Forward of the vector program over one block of m rows: D holds nv
   registers of `stride` doubles; u the uniform data. */
BLOCK_KERNEL
int batch_fwd_block(const rg_batch *b, double *restrict D, int32_t stride, int32_t m)
{
    const double *u = b->u;
    int bad = RG_OK;
    for (int32_t k = 0; k < b->nvprog; k++) {
        const inst *in = &b->vprog[k];
        double *restrict z = D + (int64_t)in->z * stride;
        const double *x = in->kx == VEC ? D + (int64_t)in->x * stride : NULL;
        const double *y = in->y >= 0 && in->ky == VEC ? D + (int64_t)in->y * stride : NULL;
        double xs = in->kx == UNI && in->x >= 0 ? u[in->x] : 0.0;
        double ys = in->y >= 0 && in->ky == UNI ? u[in->y] : 0.0;
        double c = in->c;
        switch (in->op) {
        case RG_ADD:
            if (x && y) for (int32_t i = 0; i < m; i++) z[i] = x[i] + y[i];
            else if (x) for (int32_t i = 0; i < m; i++) z[i] = x[i] + ys;
            else for (int32_t i = 0; i < m; i++) z[i] = xs + y[i];
            break;
        case RG_MUL:
            if (x && y) for (int32_t i = 0; i < m; i++) z[i] = x[i] * y[i];
            else if (x) for (int32_t i = 0; i < m; i++) z[i] = x[i] * ys;
            else for (int32_t i = 0; i < m; i++) z[i] = xs * y[i];
            break;
        case RG_ADDC: for (int32_t i = 0; i < m; i++) z[i] = x[i] + c; break;
        case RG_MULC: for (int32_t i = 0; i < m; i++) z[i] = x[i] * c; break;
        case RG_NEG: for (int32_t i = 0; i < m; i++) z[i] = -x[i]; break;
        case RG_RELU: for (int32_t i = 0; i < m; i++) z[i] = x[i] < 0.0 ? 0.0 : x[i]; break;
        case RG_POW: for (int32_t i = 0; i < m; i++) z[i] = bpow(x[i], c, &bad); break;
        case RG_TANH: for (int32_t i = 0; i < m; i++) z[i] = tanh(x[i]); break;
        case RG_EXP:
            for (int32_t i = 0; i < m; i++) {
                z[i] = exp(x[i]);
                if (isinf(z[i]) && isfinite(x[i])) bad = RG_EOVERFLOW;
            }
            break;
        case RG_LOG:
            for (int32_t i = 0; i < m; i++) {
                if (x[i] <= 0.0) bad = RG_EDOMAIN;
                z[i] = log(x[i]);
            }
            break;
        case RG_SIGMOID: for (int32_t i = 0; i < m; i++) z[i] = bsigmoid(x[i]); break;
        case RG_SOFTPLUS:
            for (int32_t i = 0; i < m; i++)
                z[i] = (x[i] > 0.0 ? x[i] : 0.0) + log1p(exp(-fabs(x[i])));
            break;
        case RG_POWV:
            for (int32_t i = 0; i < m; i++)
                z[i] = bpow(x ? x[i] : xs, y ? y[i] : ys, &bad);
            break;
        case RG_RPOWC: for (int32_t i = 0; i < m; i++) z[i] = bpow(c, x[i], &bad); break;
        case RG_STEP: for (int32_t i = 0; i < m; i++) z[i] = x[i] > 0.0 ? 1.0 : 0.0; break;
        case RG_POWU: for (int32_t i = 0; i < m; i++) z[i] = pow(x[i], c); break;
        case RG_POWVU:
            for (int32_t i = 0; i < m; i++) z[i] = pow(x ? x[i] : xs, y ? y[i] : ys);
            break;
        case RG_LNZ:
            for (int32_t i = 0; i < m; i++) z[i] = x[i] == 0.0 ? 0.0 : log(x[i]);
            break;
        case OP_DOT:                     /* ((start + w1 x1) + w2 x2) + ... */
            /* + and * are commutative in IEEE arithmetic, so the operands'
               order is not kept (nor, where two NaNs meet, is it in the ops
               one by one: which NaN's payload comes out is the compiler's) */
            dot_forward(D, u, b->terms + in->t0, in->nt, x, xs, z, stride, m);
            break;
        default: return RG_EHANDLE;
        }
    }
    return bad;
}


/* Backward of the vector program over one block: D the block's data, G its
   grads (zeroed here), P the block's partial sums for the uniform registers
   (zeroed here), each added up in row order. The local derivatives are
   step()'s (ops.h). A unary op's operand is a vector: were it uniform,
   the op's node would be too. */
BLOCK_KERNEL
void batch_bwd_block(const rg_batch *b, const double *restrict D, double *restrict G,
                      double *restrict P, int32_t stride, int32_t m)
{
    const double *u = b->u;
    memset(P, 0, (size_t)(b->nu ? b->nu : 1) * sizeof *P);
    for (int32_t j = 0; j < b->ncold_in; j++)
        memset(G + (int64_t)b->cold_in[j] * stride, 0, (size_t)m * sizeof *G);
    if (b->out_kind[0] == VEC) {
        double *g0 = G + (int64_t)b->out_reg[0] * stride;
        for (int32_t i = 0; i < m; i++) g0[i] = 1.0;
    } else {
        P[b->out_reg[0]] += (double)m;
    }
/* g[i] gets e (row i's term) added: stored (as 0 + e, the same bits) where
   first, else added */
#define PUT(g, first, e)                                                     \
    do {                                                                     \
        if (first) { for (int32_t i = 0; i < m; i++) g[i] = 0.0 + (e); }     \
        else { for (int32_t i = 0; i < m; i++) g[i] += (e); }                \
    } while (0)
    for (int32_t k = b->nvprog - 1; k >= 0; k--) {
        const inst *in = &b->vprog[k];
        if (!(in->bwd & LIVE)) continue;
        const double *z = D + (int64_t)in->z * stride;
        const double *gz = G + (int64_t)in->z * stride;
        int xv = in->kx == VEC, yv = in->y >= 0 && in->ky == VEC;
        int fx = in->bwd & FIRST_X, fy = in->bwd & FIRST_Y;
        const double *x = xv ? D + (int64_t)in->x * stride : NULL;
        const double *y = yv ? D + (int64_t)in->y * stride : NULL;
        double *gx = xv ? G + (int64_t)in->x * stride : NULL;
        double *gy = yv ? G + (int64_t)in->y * stride : NULL;
        double xs = !xv ? u[in->x] : 0.0;
        double ys = in->y >= 0 && !yv ? u[in->y] : 0.0;
        double c = in->c;
#define XI (x ? x[i] : xs)
#define YI (y ? y[i] : ys)
        switch (in->op) {
        case RG_ADD:
            if (xv) PUT(gx, fx, gz[i]);
            else P[in->x] += sum4(gz, m);
            if (yv) PUT(gy, fy, gz[i]);
            else P[in->y] += sum4(gz, m);
            break;
        case RG_MUL:
            if (xv && yv) {
                PUT(gx, fx, y[i] * gz[i]);
                PUT(gy, fy, x[i] * gz[i]);
            } else if (xv) {             /* y uniform */
                P[in->y] += dot4_put(x, gz, gx, fx, ys, m);
            } else {                     /* x uniform */
                P[in->x] += dot4_put(y, gz, gy, fy, xs, m);
            }
            break;
        case RG_POWV:
        case RG_POWVU: {                 /* rare: row by row, through T */
            double *T = G + (int64_t)b->nv * stride;     /* one spare register */
            for (int32_t i = 0; i < m; i++) T[i] = (YI * pow(XI, YI - 1.0)) * gz[i];
            if (xv) PUT(gx, fx, T[i]);
            else P[in->x] += sum4(T, m);
            for (int32_t i = 0; i < m; i++)
                T[i] = (XI == 0.0 && YI >= 0.0) ? 0.0 : (z[i] * log(XI)) * gz[i];
            if (yv) PUT(gy, fy, T[i]);
            else P[in->y] += sum4(T, m);
            break;
        }
        case RG_ADDC: PUT(gx, fx, gz[i]); break;
        case RG_MULC: PUT(gx, fx, c * gz[i]); break;
        case RG_NEG: PUT(gx, fx, -gz[i]); break;
        case RG_RELU: PUT(gx, fx, (z[i] > 0.0 ? 1.0 : 0.0) * gz[i]); break;
        case RG_POW:
        case RG_POWU: PUT(gx, fx, (c * pow(x[i], c - 1.0)) * gz[i]); break;
        case RG_TANH: PUT(gx, fx, (1.0 - z[i] * z[i]) * gz[i]); break;
        case RG_EXP: PUT(gx, fx, z[i] * gz[i]); break;
        case RG_LOG:
        case RG_LNZ: PUT(gx, fx, gz[i] / x[i]); break;
        case RG_SIGMOID: PUT(gx, fx, z[i] * (1.0 - z[i]) * gz[i]); break;
        case RG_SOFTPLUS: PUT(gx, fx, bsigmoid(x[i]) * gz[i]); break;
        case RG_RPOWC:
            PUT(gx, fx, (c == 0.0 && x[i] >= 0.0) ? 0.0 : (z[i] * log(c)) * gz[i]);
            break;
        case RG_STEP:                    /* its derivative is 0: nothing added */
            if (fx) memset(gx, 0, (size_t)m * sizeof *gx);
            break;
        case OP_DOT:                     /* its lanes after the spare register */
            dot_backward(in, b->terms + in->t0, D, G, P, u, G + (int64_t)(b->nv + 1) * stride,
                         stride, m);
            break;
        }
#undef PUT
#undef XI
#undef YI
    }
}
