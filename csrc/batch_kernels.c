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
   into one rounding (-std=c11: no FMA), so both give the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(RG_NO_CLONES)
#define BLOCK_KERNEL __attribute__((target_clones("avx2", "default")))
#else
#define BLOCK_KERNEL
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
        case OP_DOT: {                   /* ((start + w1 x1) + w2 x2) + ... */
            /* + and * are commutative in IEEE arithmetic, so the operands'
               order is not kept (nor, where two NaNs meet, is it in the ops
               one by one: which NaN's payload comes out is the compiler's) */
            const term *tm = b->terms + in->t0;
            const double *v = D + (int64_t)tm[0].v * stride;
            double w = u[tm[0].u];
            if (x) for (int32_t i = 0; i < m; i++) z[i] = x[i] + w * v[i];
            else for (int32_t i = 0; i < m; i++) z[i] = xs + w * v[i];
            for (int32_t t = 1; t < in->nt; t++) {
                v = D + (int64_t)tm[t].v * stride;
                w = u[tm[t].u];
                for (int32_t i = 0; i < m; i++) z[i] = z[i] + w * v[i];
            }
            break;
        }
        default: return RG_EHANDLE;
        }
    }
    return bad;
}

/* Sums over a block's rows, in four lanes (row i in lane i % 4) added up in
   a fixed order: no thread count or instruction set changes them. GCC and
   Clang get the four lanes as one vector (vector_size), others as four
   doubles; the additions are the same. */
#if defined(__GNUC__) && !defined(RG_NO_VECTOR_EXT)   /* (that: to test the other branch) */
typedef double lanes4 __attribute__((vector_size(32)));

static inline double lanes_total(lanes4 l, const double *a, const double *g, int32_t i,
                                 int32_t m)
{
    double r[4];
    memcpy(r, &l, sizeof r);
    for (; i < m; i++) r[i & 3] += g ? a[i] * g[i] : a[i];
    return (r[0] + r[1]) + (r[2] + r[3]);
}

static inline double sum4(const double *restrict a, int32_t m)
{
    lanes4 l = { 0.0, 0.0, 0.0, 0.0 }, x;
    int32_t i = 0;
    for (; i + 4 <= m; i += 4) {
        memcpy(&x, a + i, sizeof x);
        l += x;
    }
    return lanes_total(l, a, NULL, i, m);
}

static inline double dot4(const double *restrict a, const double *restrict g, int32_t m)
{
    lanes4 l = { 0.0, 0.0, 0.0, 0.0 }, x, y;
    int32_t i = 0;
    for (; i + 4 <= m; i += 4) {
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, g + i, sizeof y);
        l += x * y;
    }
    return lanes_total(l, a, g, i, m);
}
/* One term of dot4_put, rows i .. i + 3: its lanes l += a * y, and
   g2 = (first ? 0 : g2) + s * y, where y is g's four rows. */
static inline void put4(lanes4 *l, const double *a, lanes4 y, double *g2, int first,
                        lanes4 s, int32_t i)
{
    lanes4 x, o = { 0.0, 0.0, 0.0, 0.0 };
    memcpy(&x, a + i, sizeof x);
    *l += x * y;
    if (!first) memcpy(&o, g2 + i, sizeof o);
    o += s * y;
    memcpy(g2 + i, &o, sizeof o);
}

/* P += the four-lane sum of a[i] * g[i] (as dot4), while g2[i] gets s * g[i]
   (stored where first, else added): one pass over g for `s * a` with s
   uniform, which passes both. */
static inline double dot4_put(const double *restrict a, const double *restrict g,
                              double *g2, int first, double s, int32_t m)
{
    lanes4 l = { 0.0, 0.0, 0.0, 0.0 }, y, s4 = { s, s, s, s };
    int32_t i = 0;
    for (; i + 4 <= m; i += 4) {
        memcpy(&y, g + i, sizeof y);
        put4(&l, a, y, g2, first, s4, i);
    }
    for (int32_t j = i; j < m; j++) g2[j] = (first ? 0.0 : g2[j]) + s * g[j];
    return lanes_total(l, a, g, i, m);
}

/* dot4_put for two terms that share g (an OP_DOT's), term 1's then term 2's
   in each row, as two calls would give them (p1 and p2 get the sums): the
   two sums' chains of additions run side by side, and g is read once. g21
   may be g22 (one vector in both terms). */
static inline void dot4_put2(const double *restrict a1, const double *restrict a2,
                             const double *restrict g, double *g21, double *g22,
                             int first1, int first2, double s1, double s2, int32_t m,
                             double *p1, double *p2)
{
    lanes4 l1 = { 0.0, 0.0, 0.0, 0.0 }, l2 = l1, y;
    lanes4 s14 = { s1, s1, s1, s1 }, s24 = { s2, s2, s2, s2 };
    int32_t i = 0;
    for (; i + 4 <= m; i += 4) {
        memcpy(&y, g + i, sizeof y);
        put4(&l1, a1, y, g21, first1, s14, i);
        put4(&l2, a2, y, g22, first2, s24, i);
    }
    for (int32_t j = i; j < m; j++) {
        g21[j] = (first1 ? 0.0 : g21[j]) + s1 * g[j];
        g22[j] = (first2 ? 0.0 : g22[j]) + s2 * g[j];
    }
    *p1 += lanes_total(l1, a1, g, i, m);
    *p2 += lanes_total(l2, a2, g, i, m);
}
#else
static inline double sum4(const double *restrict a, int32_t m)
{
    double l[4] = { 0.0, 0.0, 0.0, 0.0 };
    int32_t i = 0;
    for (; i + 4 <= m; i += 4)
        for (int32_t q = 0; q < 4; q++) l[q] += a[i + q];
    for (; i < m; i++) l[i & 3] += a[i];
    return (l[0] + l[1]) + (l[2] + l[3]);
}

static inline double dot4(const double *restrict a, const double *restrict g, int32_t m)
{
    double l[4] = { 0.0, 0.0, 0.0, 0.0 };
    int32_t i = 0;
    for (; i + 4 <= m; i += 4)
        for (int32_t q = 0; q < 4; q++) l[q] += a[i + q] * g[i + q];
    for (; i < m; i++) l[i & 3] += a[i] * g[i];
    return (l[0] + l[1]) + (l[2] + l[3]);
}

static inline double dot4_put(const double *restrict a, const double *restrict g,
                              double *g2, int first, double s, int32_t m)
{
    for (int32_t i = 0; i < m; i++) g2[i] = (first ? 0.0 : g2[i]) + s * g[i];
    return dot4(a, g, m);
}

static inline void dot4_put2(const double *restrict a1, const double *restrict a2,
                             const double *restrict g, double *g21, double *g22,
                             int first1, int first2, double s1, double s2, int32_t m,
                             double *p1, double *p2)
{
    *p1 += dot4_put(a1, g, g21, first1, s1, m);
    *p2 += dot4_put(a2, g, g22, first2, s2, m);
}
#endif

/* Backward of the vector program over one block: D the block's data, G its
   grads (zeroed here), P the block's partial sums for the uniform registers
   (zeroed here), each added up in row order. The local derivatives are
   step()'s (rgrad.c). A unary op's operand is a vector: were it uniform,
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
        case OP_DOT: {
            /* Unfused, A_n passes gz on, stored first (0 + gz) into A_(n-1)
               and M_n, and so on down: every M_t and A_t has grad 0 + gz,
               T here. Then the multiplies' and the start's grads in the
               order backward met them: M_n .. M_2, A_1's start, M_1. */
            double *T = G + (int64_t)b->nv * stride;     /* the spare register */
            const term *tm = b->terms + in->t0;
            for (int32_t i = 0; i < m; i++) T[i] = 0.0 + gz[i];
/* term j's vector's data and grad */
#define TD(j) (D + (int64_t)tm[j].v * stride)
#define TG(j) (G + (int64_t)tm[j].v * stride)
            int32_t t = in->nt - 1;
            for (; t >= 2; t -= 2)                      /* M_t, M_(t-1) */
                dot4_put2(TD(t), TD(t - 1), T, TG(t), TG(t - 1), tm[t].first,
                          tm[t - 1].first, u[tm[t].u], u[tm[t - 1].u], m,
                          &P[tm[t].u], &P[tm[t - 1].u]);
            if (t == 1)
                P[tm[1].u] += dot4_put(TD(1), T, TG(1), tm[1].first, u[tm[1].u], m);
            if (xv) PUT(gx, fx, T[i]);                  /* A_1's start */
            else P[in->x] += sum4(T, m);
            P[tm[0].u] += dot4_put(TD(0), T, TG(0), tm[0].first, u[tm[0].u], m);
#undef TD
#undef TG
            break;
        }
        }
#undef PUT
#undef XI
#undef YI
    }
}
