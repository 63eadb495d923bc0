/* higher.c: derivatives that leave .grad alone (rgrad.grad), as numbers or as
   graphs of rgrad ops that can be differentiated again (create_graph).

   Both walk the nodes under the outputs in reverse creation order, as
   backward does. rg_grad_values runs backward's own steps (step() in
   rgrad.c) over those nodes with their grads and int bits saved first and
   restored after, so nothing a Python Value shows changes. rg_grad_graph
   builds, for each node, the nodes of its children's gradient terms (one
   `case` per op below, the same local derivatives as step()'s), adding the
   terms that reach a node with ADD nodes; the gradient of each input is the
   node its terms add up to. Relu's derivative is the op RG_STEP ([x > 0],
   whose own derivative is 0), so that replaying the graph recomputes it.
   An op defined in Python has no derivative C could build: RG_EPYOP. */
#include <math.h>
#include <stdlib.h>

#include "arena.h"

/* The nodes under the outputs (handles outs), highest first, into *list
   (malloc'ed) and their number into *count; RG_EPYOP if one is an op
   defined in Python. A.mark is left all zero. (Batch compiles from it too.) */
int nodes_under(const int32_t *outs, int32_t nout, int32_t **list, int32_t *count)
{
    int32_t top = -1, pending = 0, k = 0;
    *list = NULL;
    *count = 0;
    for (int32_t j = 0; j < nout; j++) {
        int32_t i = node_of(outs[j]);
        if (i < 0) return RG_EHANDLE;
        if (i > top) top = i;
    }
    int32_t *out = malloc((size_t)(top + 1) * sizeof *out);
    if (!out) return RG_ENOMEM;
    uint8_t *mark = A.mark;
    for (int32_t j = 0; j < nout; j++) {
        int32_t i = node_of(outs[j]);
        if (!mark[i]) { mark[i] = 1; pending++; }
    }
    int rc = RG_OK;
    for (int32_t i = top; pending > 0; i--) {
        if (!mark[i]) { i = skip_unmarked(mark, i) + 1; continue; }   /* i-- lands on it */
        mark[i] = 0;
        pending--;
        const rg_node *z = &A.nodes[i];
        if (z->op == RG_PY || z->op == RG_LINK) rc = RG_EPYOP;
        out[k++] = i;
        if (z->a >= 0 && !mark[z->a]) { mark[z->a] = 1; pending++; }
        if (z->b >= 0 && !mark[z->b]) { mark[z->b] = 1; pending++; }
    }
    if (rc != RG_OK) { free(out); return rc; }
    *list = out;
    *count = k;
    return RG_OK;
}

int rg_grad_values(const int32_t *outs, int32_t nout, const double *seeds,
                   const int32_t *ins, int32_t nin, double *result)
{
    int32_t *list = NULL, count = 0;
    double *saved = NULL;
    uint8_t *flags = NULL;
    int rc;
    arena_lock(&A.lock);
    for (int32_t j = 0; j < nin; j++)
        if (node_of(ins[j]) < 0) { rc = RG_EHANDLE; goto out; }
    if ((rc = nodes_under(outs, nout, &list, &count)) != RG_OK) goto out;
    saved = malloc((size_t)(count ? count : 1) * sizeof *saved);
    flags = malloc((size_t)(count ? count : 1));
    if (!saved || !flags) { rc = RG_ENOMEM; goto out; }
    rg_node *nodes = A.nodes;
    for (int32_t k = 0; k < count; k++) {
        saved[k] = nodes[list[k]].grad;
        flags[k] = nodes[list[k]].flags;
        nodes[list[k]].grad = 0.0;
    }
    for (int32_t j = 0; j < nout; j++) nodes[node_of(outs[j])].grad += seeds ? seeds[j] : 1.0;
    for (int32_t k = 0; k < count; k++) rg_step(nodes, &nodes[list[k]], 1);
    for (int32_t j = 0; j < nin; j++) result[j] = 0.0;
    /* an input the outputs do not depend on gets 0; list runs down, so find
       each input by a mark */
    for (int32_t k = 0; k < count; k++) A.mark[list[k]] = 1;
    for (int32_t j = 0; j < nin; j++) {
        int32_t i = node_of(ins[j]);
        if (A.mark[i]) result[j] = nodes[i].grad;
    }
    for (int32_t k = 0; k < count; k++) {
        A.mark[list[k]] = 0;
        nodes[list[k]].grad = saved[k];
        nodes[list[k]].flags = flags[k];
    }
out:
    rg_mutex_unlock(&A.lock);
    free(list); free(saved); free(flags);
    return rc;
}

/* ---- gradients as graphs ------------------------------------------------------ */

#define NEW(op, a, b, arg) \
    do { if ((rc = push_node(op, a, b, arg)) != RG_OK) return rc; } while (0)

/* g[i] += t, as a node: the first term is the sum so far */
static int add_term(int32_t *g, int32_t i, int32_t t)
{
    int rc;
    if (g[i] < 0) { g[i] = t; return RG_OK; }
    NEW(RG_ADD, g[i], t, 0.0);
    g[i] = A.n - 1;
    return RG_OK;
}

/* gz times the node d: x's term */
static int times(int32_t *g, int32_t x, int32_t gz, int32_t d)
{
    int rc;
    NEW(RG_MUL, gz, d, 0.0);
    return add_term(g, x, A.n - 1);
}

/* The terms node i passes to its children, given its gradient node g[i]. */
static int terms(int32_t *g, int32_t i)
{
    int rc;
    const rg_node z = A.nodes[i];      /* a copy: pushing nodes may move the array */
    int32_t gz = g[i], x = z.a, y = z.b, n;
    double c = z.arg;
    switch (z.op) {
    case RG_LEAF:
    case RG_STEP:                      /* [x > 0]: its derivative is 0 */
        return RG_OK;
    case RG_ADD:
        if ((rc = add_term(g, x, gz)) != RG_OK) return rc;
        return add_term(g, y, gz);
    case RG_MUL:
        if ((rc = times(g, x, gz, y)) != RG_OK) return rc;
        return times(g, y, gz, x);
    case RG_ADDC:
        return add_term(g, x, gz);
    case RG_MULC:
        NEW(RG_MULC, gz, -1, c);
        return add_term(g, x, A.n - 1);
    case RG_NEG:
        NEW(RG_NEG, gz, -1, 0.0);
        return add_term(g, x, A.n - 1);
    case RG_POW:                       /* c x**(c-1), unchecked as backward's */
    case RG_POWU:
        if (c == 1.0) return add_term(g, x, gz);
        NEW(RG_POWU, x, -1, c - 1.0);
        NEW(RG_MULC, A.n - 1, -1, c);
        return times(g, x, gz, A.n - 1);
    case RG_RELU:                      /* [x > 0], as [relu(x) > 0] */
        NEW(RG_STEP, x, -1, 0.0);
        return times(g, x, gz, A.n - 1);
    case RG_TANH:                      /* 1 - z^2 */
        NEW(RG_MUL, i, i, 0.0);
        NEW(RG_NEG, A.n - 1, -1, 0.0);
        NEW(RG_ADDC, A.n - 1, -1, 1.0);
        return times(g, x, gz, A.n - 1);
    case RG_EXP:                       /* z */
        return times(g, x, gz, i);
    case RG_LOG:                       /* x**-1 */
    case RG_LNZ:
        NEW(RG_POWU, x, -1, -1.0);
        return times(g, x, gz, A.n - 1);
    case RG_SIGMOID:                   /* z (1 - z) */
        NEW(RG_NEG, i, -1, 0.0);
        NEW(RG_ADDC, A.n - 1, -1, 1.0);
        NEW(RG_MUL, i, A.n - 1, 0.0);
        return times(g, x, gz, A.n - 1);
    case RG_SOFTPLUS:                  /* sigmoid(x) */
        NEW(RG_SIGMOID, x, -1, 0.0);
        return times(g, x, gz, A.n - 1);
    case RG_POWV:                      /* x: y x**(y-1); y: z ln x, 0 at x = 0 */
    case RG_POWVU:
        NEW(RG_ADDC, y, -1, -1.0);
        n = A.n - 1;
        NEW(RG_POWVU, x, n, 0.0);
        NEW(RG_MUL, y, A.n - 1, 0.0);
        if ((rc = times(g, x, gz, A.n - 1)) != RG_OK) return rc;
        NEW(RG_LNZ, x, -1, 0.0);
        NEW(RG_MUL, i, A.n - 1, 0.0);
        return times(g, y, gz, A.n - 1);
    case RG_RPOWC:                     /* z ln c (0 ** x: backward adds nothing) */
        if (c == 0.0) return RG_OK;
        NEW(RG_MULC, i, -1, log(c));
        return times(g, x, gz, A.n - 1);
    }
    return RG_EPYOP;                   /* RG_PY, RG_LINK: not in a list nodes_under() made */
}

int rg_grad_graph(const int32_t *outs, int32_t nout, const int32_t *seeds,
                  const int32_t *ins, int32_t nin, const int32_t *out_h)
{
    int32_t *list = NULL, *g = NULL, count = 0;
    int rc;
    lock_to_make();
    int32_t n0 = A.n;
    if (collection_due()) { rc = RG_COLLECT; goto out; }
    for (int32_t j = 0; j < nin; j++)
        if (node_of(ins[j]) < 0) { rc = RG_EHANDLE; goto out; }
    for (int32_t j = 0; j < nout; j++)
        if (seeds && seeds[j] >= 0 && node_of(seeds[j]) < 0) { rc = RG_EHANDLE; goto out; }
    if ((rc = nodes_under(outs, nout, &list, &count)) != RG_OK) goto out;
    /* at most 7 nodes a node (POWV), one per seed and input, and the adds */
    if ((rc = reserve_nodes(9 * (int64_t)count + 2 * (int64_t)(nout + nin) + 8)) != RG_OK)
        goto out;
    if ((rc = claim_slots(out_h, nin)) != RG_OK) goto out;
    int32_t top = list ? list[0] : -1;
    g = malloc((size_t)(top + 2) * sizeof *g);
    if (!g) { rc = RG_ENOMEM; goto undo; }
    for (int32_t k = 0; k < count; k++) g[list[k]] = -1;
    for (int32_t j = 0; j < nout; j++) {       /* the seeds: 1, or the node given */
        int32_t i = node_of(outs[j]), s;
        if (seeds && seeds[j] >= 0) {
            s = node_of(seeds[j]);
        } else {
            if ((rc = push_node(RG_LEAF, -1, -1, 1.0)) != RG_OK) goto undo;
            s = A.n - 1;
        }
        if ((rc = add_term(g, i, s)) != RG_OK) goto undo;
    }
    for (int32_t k = 0; k < count && rc == RG_OK; k++)
        if (g[list[k]] >= 0) rc = terms(g, list[k]);
    if (rc != RG_OK) goto undo;
    for (int32_t k = 0; k < count; k++) A.mark[list[k]] = 1;
    int32_t *res = malloc((size_t)(nin ? nin : 1) * sizeof *res);
    if (!res) { rc = RG_ENOMEM; goto unmark; }
    for (int32_t j = 0; j < nin && rc == RG_OK; j++) {
        int32_t i = node_of(ins[j]);
        if (A.mark[i] && g[i] >= 0) {
            res[j] = g[i];
        } else {                               /* no path: a leaf of 0 */
            rc = push_node(RG_LEAF, -1, -1, 0.0);
            res[j] = A.n - 1;
        }
    }
    /* each result a node of its own (one Value per node): a gradient that is
       an older node (a seed, an output) or another input's gets a copy,
       x * 1 (exact, signs of zero and NaN kept) */
    for (int32_t j = 0; j < nin && rc == RG_OK; j++) {
        int copy = res[j] < n0;
        for (int32_t k = 0; k < j && !copy; k++) copy = res[k] == res[j];
        if (copy && (rc = push_node(RG_MULC, res[j], -1, 1.0)) == RG_OK) res[j] = A.n - 1;
    }
    if (rc == RG_OK)
        for (int32_t j = 0; j < nin; j++) bind_slot(out_h[j], res[j]);
    free(res);
unmark:
    for (int32_t k = 0; k < count; k++) A.mark[list[k]] = 0;
undo:
    if (rc != RG_OK) {                         /* nothing made stays */
        A.n = n0;
        unclaim_slots(out_h, nin);
    }
out:
    rg_mutex_unlock(&A.lock);
    free(list); free(g);
    return rc;
}
