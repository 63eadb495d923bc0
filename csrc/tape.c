/* tape.c: replay's program. The tape (rgrad.c, tape_for) lists the nodes a
   root depends on in creation order; replay runs it forward and backward.
   Run node by node, each node costs a load of its tape entry, a switch on its
   op, and, along a chain, a wait for the value the node before it has just
   stored. A neuron's sum is such a chain: start + w1 x1 + w2 x2 + ..., each
   product and each partial sum a node read only by the next sum.

   The program is the tape with each such chain as one instruction, run with
   the running sum (forward) and the running grad (backward) in registers.
   It computes what the nodes would, in the same order, with the same
   roundings and the same int bits (ops.h): the products, partial sums and
   their grads are stored in their nodes as they are made, so every node stays
   readable. Every other node runs step() as before.

   The program is made from the tape the first time replay needs it, and is
   dropped with the tape. Without memory for it, replay walks the tape node by
   node: the same numbers. All called with the lock held. */
#include <stdlib.h>

#include "arena.h"
#include "ops.h"

/* Node i, read only by the sum `sum`, is a product w * x, and sum adds it to
   another node `other` (either way round). */
static int adds_product(const rg_node *nodes, int32_t sum, int32_t i, int32_t *other)
{
    const rg_node *s = &nodes[sum];
    if (nodes[i].op != RG_MUL || s->op != RG_ADD || A.mark[i] != 1) return 0;
    if (s->a == i && s->b != i) *other = s->b;
    else if (s->b == i && s->a != i) *other = s->a;
    else return 0;
    return 1;
}

/* The chain that starts at tape position k: its number of terms (0 if none),
   written to terms if not NULL, and its start. A chain's products and inner
   sums are read by nothing else on the tape (A.mark: the count of readers,
   up to 2); its last sum may be read by anything. */
static int32_t chain_at(int32_t k, rg_term *terms, int32_t *start)
{
    const rg_node *nodes = A.nodes;
    const int32_t *tape = A.tape;
    int32_t T = A.tape_len, n = 0, other;
    if (k + 1 >= T || !adds_product(nodes, tape[k + 1], tape[k], start)) return 0;
    for (;;) {
        if (terms) terms[n] = (rg_term){ tape[k], tape[k + 1] };
        n++;
        k += 2;
        if (k + 1 >= T || A.mark[tape[k - 1]] != 1 ||
            !adds_product(nodes, tape[k + 1], tape[k], &other) || other != tape[k - 1])
            return n;
    }
}

static void count_readers(int32_t mark_as)
{
    const rg_node *nodes = A.nodes;
    uint8_t *mark = A.mark;
    for (int32_t k = 0; k < A.tape_len; k++) {
        const rg_node *z = &nodes[A.tape[k]];
        if (z->a >= 0) mark[z->a] = mark_as ? (uint8_t)(mark[z->a] + (mark[z->a] < 2)) : 0;
        if (z->b >= 0) mark[z->b] = mark_as ? (uint8_t)(mark[z->b] + (mark[z->b] < 2)) : 0;
    }
    int32_t root = A.tape[A.tape_len - 1];         /* read by the caller */
    mark[root] = mark_as ? 2 : 0;
}

/* Makes the program from the tape: RG_OK, or RG_ENOMEM (none made). */
static int prog_make(void)
{
    int32_t T = A.tape_len, n = 0, nt = 0, start;
    if (T == 0) {
        A.prog_len = 0;
        return RG_OK;
    }
    count_readers(1);
    for (int32_t k = 0; k < T; n++) {              /* sizes */
        int32_t m = chain_at(k, NULL, &start);
        nt += m;
        k += m ? 2 * m : 1;
    }
    if (n > A.prog_cap) {
        rg_instr *p = rg_realloc(A.prog, (size_t)n * sizeof *p);
        if (!p) goto fail;
        A.prog = p;
        A.prog_cap = n;
    }
    if (nt > A.terms_cap) {
        rg_term *t = rg_realloc(A.terms, (size_t)nt * sizeof *t);
        if (!t) goto fail;
        A.terms = t;
        A.terms_cap = nt;
    }
    n = nt = 0;
    for (int32_t k = 0; k < T; n++) {
        int32_t m = chain_at(k, A.terms + nt, &start);
        if (m) {
            A.prog[n] = (rg_instr){ A.terms[nt + m - 1].sum, m, nt, start };
            nt += m;
            k += 2 * m;
        } else {
            A.prog[n] = (rg_instr){ A.tape[k], 0, 0, -1 };
            k++;
        }
    }
    count_readers(0);
    A.prog_len = n;
    return RG_OK;
fail:
    count_readers(0);
    return RG_ENOMEM;
}

/* The flags a node with flags `old` gets in forward when its value v is
   computed from children whose flags ANDed are k: idata() (ops.h), kept in a
   register, as the next node of the chain reads them. */
static inline unsigned data_bits(unsigned old, double v, unsigned k)
{
    int isint = (k & F_IDATA) && exact_int(v);
    return (old & ~(unsigned)F_IDATA) | F_IGRAD | (isint ? F_IDATA : 0u);
}

/* A chain forward: each product, then each sum, as step() makes them (a
   product's int zero loses its sign: unsign()). */
static void chain_forward(rg_node *nodes, const rg_instr *in)
{
    const rg_term *t = A.terms + in->t0;
    const rg_node *s = &nodes[in->start];
    double acc = s->data;
    unsigned accf = s->flags;
    for (int32_t i = 0; i < in->n; i++) {
        rg_node *m = &nodes[t[i].product], *a = &nodes[t[i].sum];
        const rg_node *x = &nodes[m->a], *y = &nodes[m->b];
        double p = x->data * y->data;
        unsigned mf = data_bits(m->flags, p, (unsigned)x->flags & y->flags);
        p += (mf & F_IDATA) ? 0.0 : -0.0;
        m->data = p;
        m->grad = 0.0;
        m->flags = (uint8_t)mf;
        acc = a->a == t[i].product ? p + acc : acc + p;
        accf = data_bits(a->flags, acc, mf & accf);
        a->data = acc;
        a->grad = 0.0;
        a->flags = (uint8_t)accf;
    }
}

/* A chain backward, node by node from its last sum down, as step() does:
   each sum passes its grad to the sum before it (or the start) and to its
   product, each product to its two factors. The grad and flags of the sum
   being passed down stay in registers. */
static void chain_backward(rg_node *nodes, const rg_instr *in)
{
    const rg_term *t = A.terms + in->t0;
    double ga = nodes[in->z].grad;
    unsigned fa = nodes[in->z].flags;
    for (int32_t i = in->n - 1; i >= 0; i--) {
        rg_node *m = &nodes[t[i].product];
        rg_node *before = &nodes[i ? t[i - 1].sum : in->start];
        unsigned mask = fa | ~(unsigned)F_IGRAD;        /* share(a, ALL) */
        double gb = before->grad + ga;
        unsigned fb = before->flags & mask;
        before->grad = gb;
        before->flags = (uint8_t)fb;
        double gm = m->grad + ga;
        unsigned fm = m->flags & mask;
        m->grad = gm;
        m->flags = (uint8_t)fm;
        rg_node *x = &nodes[m->a], *y = &nodes[m->b];
        unsigned mx = (fm & ((unsigned)y->flags << 1)) | ~(unsigned)F_IGRAD;
        unsigned my = (fm & ((unsigned)x->flags << 1)) | ~(unsigned)F_IGRAD;
        x->grad += y->data * gm; x->flags &= (uint8_t)mx;
        y->grad += x->data * gm; y->flags &= (uint8_t)my;
        ga = gb;
        fa = fb;
    }
}

int replay_forward(rg_node *nodes)
{
    int rc = RG_OK;
    if (A.prog_len < 0 && prog_make() != RG_OK) {     /* node by node */
        for (int32_t k = 0; k < A.tape_len && rc == RG_OK; k++) {
            rg_node *z = &nodes[A.tape[k]];
            z->grad = 0.0;
            rc = step(nodes, z, FWD);
        }
        return rc;
    }
    for (int32_t k = 0; k < A.prog_len && rc == RG_OK; k++) {
        const rg_instr *in = &A.prog[k];
        if (in->n) {
            chain_forward(nodes, in);
        } else {
            rg_node *z = &nodes[in->z];
            z->grad = 0.0;
            rc = step(nodes, z, FWD);
        }
    }
    return rc;
}

void replay_backward(rg_node *nodes)
{
    if (A.prog_len < 0 && prog_make() != RG_OK) {     /* node by node */
        for (int32_t k = A.tape_len - 1; k >= 0; k--)
            step(nodes, &nodes[A.tape[k]], BWD);
        return;
    }
    for (int32_t k = A.prog_len - 1; k >= 0; k--) {
        const rg_instr *in = &A.prog[k];
        if (in->n) chain_backward(nodes, in);
        else step(nodes, &nodes[in->z], BWD);
    }
}

int32_t rg_replay_program(void)
{
    arena_lock(&A.lock);
    int32_t n = A.prog_len;
    rg_mutex_unlock(&A.lock);
    return n;
}
