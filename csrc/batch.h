/* batch.h: what batch.c (compiling a batch, running it, the API) and
   batch_kernels.c (the loops over a block of rows) share; not part of the
   API. batch.c says how a batch is compiled and run. */
#ifndef RGRAD_BATCH_H
#define RGRAD_BATCH_H

#include "arena.h"

enum { VEC = 0, UNI = 1 };           /* where an operand lives */

/* A chain of multiply-adds, start + w1 x1 + w2 x2 + ... (a neuron's sum: each
   w uniform, each x a vector), runs as one instruction, OP_DOT, instead of a
   multiply and an add per term (fuse(), batch.c). x is the start, its terms
   are terms[t0 .. t0 + nt). */
enum { OP_DOT = 255 };

typedef struct {
    int32_t v, u;                    /* the term's vector and uniform registers */
    uint8_t first;                   /* backward: v's grad is stored, not added to */
} term;

typedef struct {
    uint8_t op, kx, ky;              /* op code; kinds of x and y (VEC or UNI) */
    uint8_t bwd;                     /* backward: LIVE, FIRST_X, FIRST_Y (below) */
    int32_t z, x, y;                 /* registers (in the kind's file) */
    int32_t t0, nt;                  /* OP_DOT: its terms */
    double c;                        /* the constant operand (arg) */
} inst;

/* Backward writes each vector register's grads without zeroing them first:
   the instruction that adds into a register first (in backward's order)
   stores instead (FIRST_X, FIRST_Y), and instructions whose node does not
   lead to outputs[0] are skipped (no LIVE). */
enum { LIVE = 1, FIRST_X = 2, FIRST_Y = 4 };

struct rg_batch {
    rg_mutex lock;                   /* one call on a batch at a time */
    int32_t nout, nin;
    int32_t *out_h, *in_h;           /* handles of the outputs and the inputs */
    /* the compiled program, valid for (gen, edits) */
    int64_t gen, edits;
    int compiled;
    int32_t nv, nu;                  /* vector and uniform registers */
    inst *vprog, *uprog;
    int32_t nvprog, nuprog;
    term *terms;                     /* OP_DOT's terms */
    int32_t most_terms;              /* the most terms of any OP_DOT (0: none) */
    int fuse;                        /* fuse_chains, fixed_block as it was made */
    int32_t fixed_block;
    int32_t *in_reg;                 /* input j -> vector register */
    int32_t *out_reg;                /* output k -> register, kind in out_kind */
    uint8_t *out_kind;
    int32_t nleaf;                   /* shared leaves: uniform registers 0..nleaf-1 */
    int32_t *cold_in;                /* inputs whose grads backward never writes (0) */
    int32_t ncold_in;
    int32_t *leaf_node;              /* their node indices (for gen) */
    /* the last forward */
    double *u;                       /* uniform data, nu (u_cap allocated) */
    int64_t u_cap;
    int64_t rows;                    /* rows of the last forward, 0 before any */
    int32_t block;                   /* rows a block */
    int32_t stride;                  /* doubles from one register's rows to the next's */
    double *in_rows;                 /* rows x nin, a copy of the last forward's rows */
    double *kept;                    /* each block's vector data (nblocks x nv x block), or NULL */
    double *in_grads;                /* rows x nin after backward */
    int64_t in_rows_cap, kept_cap, in_grads_cap;   /* doubles allocated (kept for reuse) */
    int keep;                        /* the last forward kept its data in kept */
    int have_grads;
};

/* Forward of the vector program over one block of m rows: D holds nv
   registers of `stride` doubles; b->u the uniform data. RG_OK, or the
   math error one of the rows met. */
RG_INTERNAL int batch_fwd_block(const rg_batch *b, double *restrict D, int32_t stride,
                                int32_t m);
/* Backward of the vector program over one block (batch_kernels.c). */
RG_INTERNAL void batch_bwd_block(const rg_batch *b, const double *restrict D,
                                 double *restrict G, double *restrict P, int32_t stride,
                                 int32_t m);

#endif
