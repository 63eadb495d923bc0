/* batch.c: batched replay (rgrad.Batch). One sample's graph, built once with
   Values, runs over many rows at once: every node the outputs depend on holds
   a vector of rows, and each op is one loop over a block of rows.

   Compiling. The graph under the outputs is walked once, in creation order
   (a topological order). Each node becomes a register:
   - a per-row input (a leaf the caller names) and every node that depends on
     one is a vector register: one double per row of the block;
   - every other leaf (the parameters) and every node that depends on such
     leaves only is a uniform register: one double, computed once per
     forward. Constant operands stay in the instruction, as in the node.
   The program is two lists of instructions: the uniform one, run once, and
   the vector one, run over each block. In the vector one, a chain of
   multiply-adds whose inner sums nothing else reads (a neuron's
   b + w1 x1 + w2 x2 + ...) is one instruction (fuse()), with the chain's
   bits. The batch keeps the handles of its
   outputs and inputs (Python keeps their Values, which keep the graph), and
   compiles again when a compaction has moved nodes or a node was given new
   children since (A.collections, A.edits).

   Running. Rows go in blocks of BLOCK rows (sized so that a block's data and
   grads stay in L2). Forward runs the vector program up each block; its
   data is kept for backward when it fits in KEEP_BYTES, else backward runs
   the block's forward again. Backward seeds d out[0] = 1 in every row, runs
   the program down, adds the block's contributions to each uniform register
   in row order into that block's own partial sums, and keeps the per-row
   grads of the inputs. Then the blocks' partials are added in block order,
   backward runs down the uniform program once, and each shared leaf's grad
   gets scale times its sum. Blocks are shared among worker threads in fixed
   stripes; no sum depends on which thread ran a block, so any thread count
   gives the same bits.

   The arena lock is held only to compile, to read the shared leaves' data
   and to add their grads: the loops over rows run without it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "pool.h"

#define L2_BYTES (512 * 1024)       /* a block's data and grads (16 B a node a row) */
#define KEEP_BYTES ((int64_t)16 << 20)   /* forward data kept for backward, at most */
#define MIN_THREAD_WORK 200000       /* node-rows a worker thread must have to pay */

/* rg_batch_tune, for tests: fuse_chains 0 compiles without OP_DOT; a
   fixed_block > 0 sets the rows a block (else sized for L2). A batch takes
   both when it is made and keeps them, so that compiling it again (after a
   compaction) gives the same program. */
static int fuse_chains = 1;
static int32_t fixed_block = 0;


static void drop_program(rg_batch *b)
{
    free(b->vprog); free(b->uprog); free(b->in_reg); free(b->out_reg);
    free(b->out_kind); free(b->leaf_node); free(b->cold_in); free(b->terms);
    b->vprog = b->uprog = NULL;
    b->terms = NULL;
    b->in_reg = b->out_reg = b->leaf_node = b->cold_in = NULL;
    b->out_kind = NULL;
    b->compiled = 0;        /* (u stays: a compaction recompiles to the same registers) */
}

static void drop_run(rg_batch *b)
{
    b->rows = 0;
    b->keep = 0;
    b->have_grads = 0;
}

/* *p with room for n doubles, its contents kept, or 0 (and *p as it was) */
static int room_keep(double **p, int64_t *cap, int64_t n)
{
    if (n < 1) n = 1;
    if (*cap >= n) return 1;
    double *q = realloc(*p, (size_t)n * sizeof *q);
    if (!q) return 0;
    *p = q;
    *cap = n;
    return 1;
}

/* *p with room for n doubles (its contents are not kept), or 0 */
static int room(double **p, int64_t *cap, int64_t n)
{
    if (n < 1) n = 1;
    if (*cap >= n) return 1;
    free(*p);
    *p = malloc((size_t)n * sizeof **p);
    *cap = *p ? n : 0;
    return *p != NULL;
}

/* ---- compiling (arena lock held) ----------------------------------------- */

/* Whether in multiplies a uniform by a vector. */
static int mul_uv(const inst *in)
{
    return in->op == RG_MUL && in->y >= 0 && in->kx != in->ky;
}

/* The terms of the chain of multiply-adds at vprog[k]: pairs (M_t, A_t) one
   after the other, M_t = w_t * x_t (one operand uniform, one a vector),
   A_1 = start + M_1 and A_t = A_(t-1) + M_t (either operand order), where
   no register but the last A's is used by anything else (uses: times read,
   an output counting once). Returns t, and the start (kind, register). */
static int32_t chain_at(const rg_batch *b, int32_t k, const int32_t *uses,
                        uint8_t *start_kind, int32_t *start)
{
    int32_t t = 0, sum = -1;
    for (int32_t j = k; j + 1 < b->nvprog; j += 2, t++) {
        const inst *mul = &b->vprog[j], *add = &b->vprog[j + 1];
        if (!mul_uv(mul) || add->op != RG_ADD || add->y < 0 || uses[mul->z] != 1) break;
        uint8_t ok;
        int32_t other;
        if (add->kx == VEC && add->x == mul->z) { ok = add->ky; other = add->y; }
        else if (add->ky == VEC && add->y == mul->z) { ok = add->kx; other = add->x; }
        else break;
        if (t == 0) {
            *start_kind = ok;
            *start = other;
        } else if (ok != VEC || other != sum || uses[sum] != 1) {
            break;
        }
        sum = add->z;
    }
    return t;
}

/* Fuses each chain of two terms or more into one OP_DOT, then numbers the
   vector registers again without the chains' inner ones (the inputs keep
   0..nin-1). Forward adds the terms in the chain's order, each product
   rounded first, so the sums are the chain's, bit for bit; backward gives
   each term's grads what the multiply's backward gave them (see batch_bwd_block). */
static int fuse(rg_batch *b, int32_t *nv)
{
    int32_t n = b->nvprog, w = 0, nterms = 0;
    b->most_terms = 0;
    int32_t *uses = calloc((size_t)(*nv ? *nv : 1), sizeof *uses);
    int32_t *to = malloc((size_t)(*nv ? *nv : 1) * sizeof *to);
    b->terms = malloc((size_t)(n / 2 + 1) * sizeof *b->terms);
    if (!uses || !to || !b->terms) { free(uses); free(to); return RG_ENOMEM; }
    for (int32_t k = 0; k < n; k++) {
        const inst *in = &b->vprog[k];
        if (in->kx == VEC && in->x >= 0) uses[in->x]++;
        if (in->y >= 0 && in->ky == VEC) uses[in->y]++;
    }
    for (int32_t k = 0; k < b->nout; k++)
        if (b->out_kind[k] == VEC) uses[b->out_reg[k]]++;
    for (int32_t k = 0; k < n;) {
        uint8_t sk = UNI;
        int32_t start = -1;
        int32_t t = b->fuse ? chain_at(b, k, uses, &sk, &start) : 0;
        if (t < 2) {
            b->vprog[w++] = b->vprog[k++];
            continue;
        }
        inst dot = { .op = OP_DOT, .kx = sk, .ky = UNI, .x = start, .y = -1,
                     .z = b->vprog[k + 2 * t - 1].z, .t0 = nterms, .nt = t };
        for (int32_t j = 0; j < t; j++) {         /* read before vprog[w] is written */
            const inst *mul = &b->vprog[k + 2 * j];
            b->terms[nterms++] = mul->kx == VEC ? (term){ .v = mul->x, .u = mul->y }
                                                : (term){ .v = mul->y, .u = mul->x };
        }
        b->vprog[w++] = dot;
        if (t > b->most_terms) b->most_terms = t;
        k += 2 * t;
    }
    b->nvprog = w;
    /* the registers still read or written, numbered again in order */
    for (int32_t r = 0; r < *nv; r++) to[r] = r < b->nin ? r : -1;
    for (int32_t k = 0; k < w; k++) to[b->vprog[k].z] = 0;
    int32_t m = b->nin;
    for (int32_t r = b->nin; r < *nv; r++)
        if (to[r] == 0) to[r] = m++;
    for (int32_t k = 0; k < w; k++) {
        inst *in = &b->vprog[k];
        in->z = to[in->z];
        if (in->kx == VEC && in->x >= 0) in->x = to[in->x];
        if (in->y >= 0 && in->ky == VEC) in->y = to[in->y];
    }
    for (int32_t j = 0; j < nterms; j++) b->terms[j].v = to[b->terms[j].v];
    for (int32_t k = 0; k < b->nout; k++)
        if (b->out_kind[k] == VEC) b->out_reg[k] = to[b->out_reg[k]];
    *nv = m;
    free(uses);
    free(to);
    return RG_OK;
}

void rg_batch_tune(int fuse, int32_t block)
{
    arena_lock(&A.lock);
    fuse_chains = fuse;
    fixed_block = block <= 0 ? 0 : block > 4096 ? 4096 : (block + 7) & ~7;
    rg_mutex_unlock(&A.lock);
}

static int compile(rg_batch *b)
{
    int rc = RG_OK;
    int32_t top = -1;
    int32_t *nodes = NULL, *reg = NULL;
    uint8_t *kind = NULL;
    drop_program(b);
    for (int32_t k = 0; k < b->nout; k++) {
        int32_t i = node_of(b->out_h[k]);
        if (i < 0) return RG_EHANDLE;
        if (i > top) top = i;
    }
    for (int32_t j = 0; j < b->nin; j++) {
        int32_t i = node_of(b->in_h[j]);
        if (i < 0) return RG_EHANDLE;
        if (A.nodes[i].op != RG_LEAF) return RG_EBATCHIN;
    }
    if (top < 0) return RG_EHANDLE;
    /* the nodes under the outputs, highest first (RG_EPYOP for a Python op) */
    int32_t count = 0;
    if ((rc = nodes_under(b->out_h, b->nout, &nodes, &count)) != RG_OK) return rc;
    /* nodes[] runs down; the registers are numbered up. reg[i] is first
       -2 - j for the node of input j, -1 for any other. */
    reg = malloc((size_t)(top + 1) * sizeof *reg);
    kind = malloc((size_t)(top + 1));
    b->vprog = malloc((size_t)(count ? count : 1) * sizeof *b->vprog);
    b->uprog = malloc((size_t)(count ? count : 1) * sizeof *b->uprog);
    b->leaf_node = malloc((size_t)(count ? count : 1) * sizeof *b->leaf_node);
    b->in_reg = malloc((size_t)(b->nin ? b->nin : 1) * sizeof *b->in_reg);
    b->out_reg = malloc((size_t)b->nout * sizeof *b->out_reg);
    b->out_kind = malloc((size_t)b->nout);
    if (!reg || !kind || !b->vprog || !b->uprog || !b->leaf_node || !b->in_reg ||
        !b->out_reg || !b->out_kind) { rc = RG_ENOMEM; goto out; }
    int32_t nv = 0, nu = 0, nleaf = 0;
    for (int32_t j = 0; j < b->nin; j++)      /* each input a register of its own */
        b->in_reg[j] = nv++;
    int dup = 0;                              /* an input twice: marks, then none */
    for (int32_t j = 0; j < b->nin; j++) {
        int32_t i = node_of(b->in_h[j]);
        dup |= A.mark[i];
        A.mark[i] = 1;
    }
    for (int32_t j = 0; j < b->nin; j++) A.mark[node_of(b->in_h[j])] = 0;
    if (dup) { rc = RG_EBATCHIN; goto out; }
    for (int32_t k = 0; k < count; k++) reg[nodes[k]] = -1;
    for (int32_t j = 0; j < b->nin; j++) {
        int32_t i = node_of(b->in_h[j]);
        if (i <= top) reg[i] = -2 - j;        /* (a node the outputs do not use is never read) */
    }
    /* leaves: inputs are vector registers 0..nin-1; the other leaves, shared,
       uniform registers 0..nleaf-1 */
    for (int32_t k = count - 1; k >= 0; k--) {
        int32_t i = nodes[k];
        if (A.nodes[i].op != RG_LEAF) continue;
        if (reg[i] <= -2) {
            kind[i] = VEC;
            reg[i] = b->in_reg[-2 - reg[i]];
        } else {
            kind[i] = UNI;
            b->leaf_node[nleaf++] = i;
            reg[i] = nu++;
        }
    }
    int32_t nvp = 0, nup = 0;
    for (int32_t k = count - 1; k >= 0; k--) {
        int32_t i = nodes[k];
        const rg_node *z = &A.nodes[i];
        if (z->op == RG_LEAF) continue;
        if (reg[i] <= -2) { rc = RG_EBATCHIN; goto out; }   /* (inputs are leaves) */
        int ka = z->a >= 0 ? kind[z->a] : UNI, kb = z->b >= 0 ? kind[z->b] : UNI;
        inst in = { .op = z->op, .kx = (uint8_t)ka, .ky = (uint8_t)kb,
                    .x = z->a >= 0 ? reg[z->a] : -1, .y = z->b >= 0 ? reg[z->b] : -1,
                    .c = z->arg };
        if (ka == UNI && kb == UNI) {
            kind[i] = UNI;
            in.z = reg[i] = nu++;
            b->uprog[nup++] = in;
        } else {
            kind[i] = VEC;
            in.z = reg[i] = nv++;
            b->vprog[nvp++] = in;
        }
    }
    for (int32_t k = 0; k < b->nout; k++) {
        int32_t i = node_of(b->out_h[k]);
        b->out_reg[k] = reg[i];
        b->out_kind[k] = kind[i];
    }
    b->nvprog = nvp;
    if ((rc = fuse(b, &nv)) != RG_OK) goto out;
    nvp = b->nvprog;
    b->cold_in = malloc((size_t)(b->nin ? b->nin : 1) * sizeof *b->cold_in);
    uint8_t *written = calloc((size_t)(nv ? nv : 1), 1);
    uint8_t *live_u = calloc((size_t)(nu ? nu : 1), 1);
    if (!room_keep(&b->u, &b->u_cap, nu) || !b->cold_in || !written || !live_u) {
        free(written); free(live_u);
        rc = RG_ENOMEM;
        goto out;
    }
    /* backward's order: which instruction writes a register first */
    if (b->out_kind[0] == VEC) written[b->out_reg[0]] = 1;      /* seeded */
    for (int32_t k = nvp - 1; k >= 0; k--) {
        inst *in = &b->vprog[k];
        in->bwd = 0;
        if (!written[in->z]) continue;          /* no path to outputs[0] */
        in->bwd = LIVE;
        term *tm = in->op == OP_DOT ? b->terms + in->t0 : NULL;
        for (int32_t t = tm ? in->nt - 1 : 0; t >= 1; t--) {   /* M_n .. M_2 */
            tm[t].first = !written[tm[t].v];
            written[tm[t].v] = 1;
        }
        if (in->kx == VEC && !written[in->x]) { in->bwd |= FIRST_X; written[in->x] = 1; }
        if (tm) {                               /* then A_1's start, then M_1 */
            tm[0].first = !written[tm[0].v];
            written[tm[0].v] = 1;
        }
        if (in->y >= 0 && in->ky == VEC && !written[in->y]) {
            in->bwd |= FIRST_Y;
            written[in->y] = 1;
        }
    }
    b->ncold_in = 0;
    for (int32_t j = 0; j < b->nin; j++)
        if (!written[b->in_reg[j]]) b->cold_in[b->ncold_in++] = b->in_reg[j];
    /* the uniform instructions backward runs: those that lead to outputs[0]
       (others have grad 0, and 0 times an infinite slope would be NaN) */
    if (b->out_kind[0] == UNI) live_u[b->out_reg[0]] = 1;
    for (int32_t k = 0; k < nvp; k++) {
        const inst *in = &b->vprog[k];
        if (!(in->bwd & LIVE)) continue;
        if (in->kx == UNI && in->x >= 0) live_u[in->x] = 1;
        if (in->y >= 0 && in->ky == UNI) live_u[in->y] = 1;
        for (int32_t t = 0; in->op == OP_DOT && t < in->nt; t++)
            live_u[b->terms[in->t0 + t].u] = 1;
    }
    for (int32_t k = nup - 1; k >= 0; k--) {
        inst *in = &b->uprog[k];
        in->bwd = live_u[in->z] ? LIVE : 0;
        if (!in->bwd) continue;
        if (in->x >= 0) live_u[in->x] = 1;
        if (in->y >= 0) live_u[in->y] = 1;
    }
    free(written);
    free(live_u);
    b->nv = nv; b->nu = nu; b->nleaf = nleaf;
    b->nvprog = nvp; b->nuprog = nup;
    int64_t blk = L2_BYTES / ((int64_t)(nv ? nv : 1) * 16);
    blk = blk < 16 ? 16 : blk > 256 ? 256 : blk;
    b->block = b->fixed_block ? b->fixed_block : (int32_t)(blk & ~7);
    b->gen = A.collections;
    b->edits = A.edits;
    b->compiled = 1;
out:
    free(nodes); free(reg); free(kind);
    if (rc != RG_OK) drop_program(b);
    return rc;
}

/* The program, compiled for the arena as it is now. */
static int ready(rg_batch *b)
{
    if (b->compiled && b->gen == A.collections && b->edits == A.edits) return RG_OK;
    int32_t old_nv = b->nv, old_nu = b->nu, old_block = b->block, was = b->compiled;
    int rc = compile(b);
    if (rc != RG_OK || (was && (b->nv != old_nv || b->nu != old_nu || b->block != old_block)))
        drop_run(b);
    return rc;
}

/* The uniform program, forward (once per forward) or backward (once per backward, from
   the summed grads UG). */
static int uni_forward(rg_batch *b)
{
    double *u = b->u;
    for (int32_t k = 0; k < b->nuprog; k++) {
        const inst *in = &b->uprog[k];
        rg_node x = { .data = in->x >= 0 ? u[in->x] : 0.0 };
        rg_node y = { .data = in->y >= 0 ? u[in->y] : 0.0 };
        rg_node z = { .op = in->op, .arg = in->c, .a = in->x >= 0 ? 0 : -1,
                      .b = in->y >= 0 ? 1 : -1 };
        rg_node pair[2] = { x, y };
        int rc = rg_step(pair, &z, 0);
        if (rc != RG_OK) return rc;
        u[in->z] = z.data;
    }
    return RG_OK;
}

static void uni_backward(const rg_batch *b, double *UG)
{
    const double *u = b->u;
    for (int32_t k = b->nuprog - 1; k >= 0; k--) {
        const inst *in = &b->uprog[k];
        if (!(in->bwd & LIVE)) continue;
        rg_node pair[2] = { { .data = in->x >= 0 ? u[in->x] : 0.0 },
                            { .data = in->y >= 0 ? u[in->y] : 0.0 } };
        rg_node z = { .op = in->op, .arg = in->c, .data = u[in->z], .grad = UG[in->z],
                      .a = in->x >= 0 ? 0 : -1, .b = in->y >= 0 ? 1 : -1 };
        rg_step(pair, &z, 1);
        if (in->x >= 0) UG[in->x] += pair[0].grad;
        if (in->y >= 0) UG[in->y] += pair[1].grad;
    }
}

/* ---- threads ----------------------------------------------------------------- */

typedef struct {
    rg_batch *b;
    int backward;
    int32_t t, nthreads;
    double *out;                     /* forward: rows x nout */
    double *P;                       /* backward: nblocks x nu partials */
    int rc;
} work;

static void run_blocks(void *arg)
{
    work *w = arg;
    rg_batch *b = w->b;
    int32_t B = b->block, S = b->stride, nv = b->nv;
    int64_t nblocks = (b->rows + B - 1) / B;
    double *scratch = NULL, *G = NULL;
    if (!b->keep || w->backward) {
        scratch = b->keep ? NULL : malloc((size_t)(nv ? nv : 1) * (size_t)S * sizeof *scratch);
        /* G: the grads, a spare register (POWV's), and OP_DOT's lanes */
        size_t g_size = (size_t)(nv + 1) * (size_t)S + 4 * (size_t)(b->most_terms + 1);
        G = w->backward ? malloc(g_size * sizeof *G) : NULL;
        if ((!b->keep && !scratch) || (w->backward && !G)) {
            w->rc = RG_ENOMEM;
            goto out;
        }
    }
    for (int64_t blk = w->t; blk < nblocks; blk += w->nthreads) {
        int64_t r0 = blk * B;
        int32_t m = (int32_t)(b->rows - r0 < B ? b->rows - r0 : B);
        double *D = b->keep ? b->kept + blk * (int64_t)nv * S : scratch;
        if (!w->backward || !b->keep) {
            for (int32_t j = 0; j < b->nin; j++) {
                double *col = D + (int64_t)b->in_reg[j] * S;
                for (int32_t i = 0; i < m; i++) col[i] = b->in_rows[(r0 + i) * b->nin + j];
            }
            int rc = batch_fwd_block(b, D, S, m);
            if (rc != RG_OK) { w->rc = rc; goto out; }
        }
        if (!w->backward) {
            for (int32_t k = 0; k < b->nout; k++) {
                const double *src = b->out_kind[k] == VEC ? D + (int64_t)b->out_reg[k] * S : NULL;
                double us = src ? 0.0 : b->u[b->out_reg[k]];
                for (int32_t i = 0; i < m; i++)
                    w->out[(r0 + i) * b->nout + k] = src ? src[i] : us;
            }
        } else {
            batch_bwd_block(b, D, G, w->P + blk * (int64_t)(b->nu ? b->nu : 1), S, m);
            for (int32_t j = 0; j < b->nin; j++) {
                const double *col = G + (int64_t)b->in_reg[j] * S;
                for (int32_t i = 0; i < m; i++) b->in_grads[(r0 + i) * b->nin + j] = col[i];
            }
        }
    }
out:
    free(scratch); free(G);
}

/* Runs the blocks on up to `threads` threads (the caller's among them), the
   pool's (pool.c). */
static int run(rg_batch *b, int backward, int threads, double *out, double *P)
{
    int64_t nblocks = (b->rows + b->block - 1) / b->block;
    int64_t work_total = b->rows * (int64_t)(b->nvprog + 1);
    int64_t most = work_total / MIN_THREAD_WORK;
    int32_t T = threads < 1 ? 1 : threads;
    if (T > nblocks) T = (int32_t)nblocks;
    if (T > most) T = most > 1 ? (int32_t)most : 1;
    if (T > POOL_MOST) T = POOL_MOST;
    work w[POOL_MOST];
    void *args[POOL_MOST];
    for (int32_t t = 0; t < T; t++) {
        w[t] = (work){ .b = b, .backward = backward, .t = t, .nthreads = T, .out = out,
                       .P = P, .rc = RG_OK };
        args[t] = &w[t];
    }
    pool_run(run_blocks, args, T);
    int rc = RG_OK;
    for (int32_t t = 0; t < T && rc == RG_OK; t++) rc = w[t].rc;
    return rc;
}

/* ---- the API --------------------------------------------------------------- */

int rg_batch_new(const int32_t *outs, int32_t nout, const int32_t *ins, int32_t nin,
                 rg_batch **made)
{
    *made = NULL;
    if (nout < 1 || nin < 0) return RG_EBATCHIN;
    rg_batch *b = calloc(1, sizeof *b);
    if (!b) return RG_ENOMEM;
    rg_mutex init = RG_MUTEX_INIT;
    b->lock = init;
    b->nout = nout;
    b->nin = nin;
    b->out_h = malloc((size_t)nout * sizeof *b->out_h);
    b->in_h = malloc((size_t)(nin ? nin : 1) * sizeof *b->in_h);
    if (!b->out_h || !b->in_h) { rg_batch_free(b); return RG_ENOMEM; }
    memcpy(b->out_h, outs, (size_t)nout * sizeof *outs);
    if (nin) memcpy(b->in_h, ins, (size_t)nin * sizeof *ins);
    arena_lock(&A.lock);
    b->fuse = fuse_chains;
    b->fixed_block = fixed_block;
    int rc = compile(b);
    rg_mutex_unlock(&A.lock);
    if (rc != RG_OK) { rg_batch_free(b); return rc; }
    *made = b;
    return RG_OK;
}

void rg_batch_free(rg_batch *b)
{
    if (!b) return;
    drop_program(b);
    free(b->u);
    free(b->in_rows); free(b->kept); free(b->in_grads);
    free(b->out_h); free(b->in_h);
    free(b);
}

int32_t rg_batch_shape(rg_batch *b, int32_t which)
{
    arena_lock(&b->lock);
    int32_t r = which == 0 ? b->nv : which == 1 ? b->nu : which == 2 ? b->nleaf
              : which == 3 ? b->block : b->nvprog + b->nuprog;
    rg_mutex_unlock(&b->lock);
    return r;
}

int rg_batch_forward(rg_batch *b, const double *rows, int64_t n, double *out, int threads)
{
    int rc;
    if (n < 1) return RG_EBATCHIN;
    arena_lock(&b->lock);
    drop_run(b);
    arena_lock(&A.lock);
    rc = ready(b);
    if (rc == RG_OK)                 /* the shared leaves' data, now */
        for (int32_t k = 0; k < b->nleaf; k++) b->u[k] = A.nodes[b->leaf_node[k]].data;
    rg_mutex_unlock(&A.lock);
    if (rc != RG_OK) goto out;
    if ((rc = uni_forward(b)) != RG_OK) goto out;
    if (!room(&b->in_rows, &b->in_rows_cap, n * b->nin)) { rc = RG_ENOMEM; goto out; }
    if (b->nin) memcpy(b->in_rows, rows, (size_t)n * (size_t)b->nin * sizeof *rows);
    b->rows = n;
    int64_t nblocks = (n + b->block - 1) / b->block;
    /* A register's rows, rounded up to a whole number of 64-byte lines, and
       that number odd: registers a power of two apart in memory would share
       the cache's sets (and loads would wait on stores to other registers
       4 KiB away), which a loop over many registers at once meets. */
    int64_t most = n < b->block ? n : b->block;
    b->stride = (int32_t)((most + 7) & ~7);
    if ((b->stride / 8) % 2 == 0) b->stride += 8;
    int64_t doubles = nblocks * (int64_t)b->nv * b->stride;
    /* else backward computes each block again */
    b->keep = doubles * (int64_t)sizeof(double) <= KEEP_BYTES &&
              room(&b->kept, &b->kept_cap, doubles);
    rc = run(b, 0, threads, out, NULL);
out:
    if (rc != RG_OK) drop_run(b);
    rg_mutex_unlock(&b->lock);
    return rc;
}

int rg_batch_backward(rg_batch *b, double scale, int threads)
{
    int rc = RG_OK;
    double *P = NULL, *UG = NULL;
    arena_lock(&b->lock);
    b->have_grads = 0;
    if (b->rows == 0) { rc = RG_ENOFORWARD; goto out; }
    arena_lock(&A.lock);
    rc = ready(b);                   /* the graph changed since forward: refused */
    rg_mutex_unlock(&A.lock);
    if (rc != RG_OK) goto out;
    if (b->rows == 0) { rc = RG_ENOFORWARD; goto out; }   /* (recompiled otherwise) */
    int64_t nblocks = (b->rows + b->block - 1) / b->block;
    P = malloc((size_t)nblocks * (size_t)(b->nu ? b->nu : 1) * sizeof *P);
    UG = calloc((size_t)(b->nu ? b->nu : 1), sizeof *UG);
    if (!P || !UG || !room(&b->in_grads, &b->in_grads_cap, b->rows * b->nin)) {
        rc = RG_ENOMEM;
        goto out;
    }
    if ((rc = run(b, 1, threads, NULL, P)) != RG_OK) goto out;
    for (int64_t blk = 0; blk < nblocks; blk++)      /* in block order, always */
        for (int32_t k = 0; k < b->nu; k++) UG[k] += P[blk * (b->nu ? b->nu : 1) + k];
    uni_backward(b, UG);
    arena_lock(&A.lock);
    rc = ready(b);                   /* (a compaction since: the leaves moved) */
    if (rc == RG_OK) {
        b->have_grads = 1;
        for (int32_t k = 0; k < b->nleaf; k++) {
            rg_node *p = &A.nodes[b->leaf_node[k]];
            p->grad += scale * UG[k];
            p->flags &= (uint8_t)~F_IGRAD;
        }
    }
    rg_mutex_unlock(&A.lock);
out:
    free(P); free(UG);
    rg_mutex_unlock(&b->lock);
    return rc;
}

int rg_batch_input_grads(rg_batch *b, double *out, int64_t rows)
{
    arena_lock(&b->lock);
    int rc = b->have_grads && b->rows == rows ? RG_OK : RG_ENOFORWARD;
    if (rc == RG_OK && b->nin)
        memcpy(out, b->in_grads, (size_t)b->rows * (size_t)b->nin * sizeof *out);
    rg_mutex_unlock(&b->lock);
    return rc;
}
