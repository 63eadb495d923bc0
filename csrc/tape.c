/* tape.c: replay's program. The tape (rgrad.c, tape_for) lists the nodes a
   root depends on in creation order; replay runs it forward and backward.
   Run node by node, each node costs a load of its tape entry, a switch on its
   op, and, along a chain, a wait for the value the node before it has just
   stored. Two kinds of chain are common:

   - a neuron's sum, start + w1 x1 + w2 x2 + ..., each product and each
     partial sum a node read only by the next sum (a "dot");
   - nodes each of which reads the one just before it, as in
     acc = acc * 0.999 + x[i] or (1 + -y * score).relu(): each node adds,
     multiplies, negates or rectifies the one before it (a "tail").

   The program is the tape as instructions, each a head and a tail: the
   head a dot or a node run by step(), the tail the nodes after it that
   follow it so (relu(dot) is one instruction). Each runs with the running
   value (forward) and the running grad (backward) in registers. It
   computes what the nodes would, in the same order, with the same
   roundings and the same int bits (ops.h): every value, grad and flag is
   stored in its node as step() would leave it, so every node stays readable.
   (But for which NaN comes out where two NaNs meet, sign and payload: for
   all other values a + b is b + a to the bit, so a sum adds in the order
   that suits the loop, and C lets the compiler take a + b as b + a anyway,
   choosing per call site, here as in step().)

   The program is made from the tape the first time replay needs it, and is
   dropped with the tape. Without memory for it, rgrad.c walks the nodes one
   by one, as in anomaly mode: the same numbers. All called with the lock
   held. */
#include <stdlib.h>

#include "arena.h"
#include "ops.h"

/* A term's and a link's nodes are kept as where they start in the arena,
   counted in doubles (AT), and found by NODE: an index would cost one more
   instruction for each (times 5, then times 8), on the loops' hottest
   loads; this took replay from 48.1 to 44.3 instructions a node on the
   demo graph. prog_make makes no program for an arena whose nodes would
   not all fit (past 858 million nodes): replay then runs node by node. */
#define DOUBLES (sizeof(rg_node) / sizeof(double))
_Static_assert(sizeof(rg_node) % sizeof(double) == 0, "a node is a whole number of doubles");
#define AT(i) ((uint32_t)(i) * (uint32_t)DOUBLES)
#define NODE(nodes, at) ((rg_node *)((char *)(nodes) + (size_t)(at) * sizeof(double)))

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

/* The dot that starts at tape position k: its number of terms (0 if none),
   written to terms if not NULL, and its start. A dot's products and inner
   sums are read by nothing else on the tape (A.mark: the count of readers,
   up to 2); its last sum may be read by anything. */
static int32_t dot_at(int32_t k, rg_term *terms, int32_t *start)
{
    const rg_node *nodes = A.nodes;
    const int32_t *tape = A.tape;
    int32_t T = A.tape_len, n = 0, other;
    if (k + 1 >= T || !adds_product(nodes, tape[k + 1], tape[k], start)) return 0;
    for (;;) {
        if (terms) {
            const rg_node *m = &nodes[tape[k]];
            terms[n] = (rg_term){ AT(tape[k]), AT(tape[k + 1]), AT(m->a), AT(m->b) };
        }
        n++;
        k += 2;
        if (k + 1 >= T || A.mark[tape[k - 1]] != 1 ||
            !adds_product(nodes, tape[k + 1], tape[k], &other) || other != tape[k - 1])
            return n;
    }
}

/* Whether node z, next after p on the tape, can follow it in a tail: z is
   an op the tail knows that reads p once. Other readers of p may come
   later: in backward they have added into p's grad, in memory, before z
   passes its part down, as they have node by node. (A dot is different:
   its product sits between two sums.) */
static int follows(const rg_node *nodes, int32_t z, int32_t p)
{
    const rg_node *n = &nodes[z];
    switch (n->op) {
    case RG_ADD: case RG_MUL:
        return (n->a == p) != (n->b == p);
    case RG_ADDC: case RG_MULC: case RG_NEG: case RG_RELU:
        return n->a == p;
    default:
        return 0;
    }
}

/* The length of the tail that starts at tape position k >= 1: the nodes
   from k on that each follow the one before them. It stops where a dot
   starts. */
static int32_t tail_at(int32_t k)
{
    const int32_t *tape = A.tape;
    int32_t T = A.tape_len, len = 0, start;
    while (k + len < T && follows(A.nodes, tape[k + len], tape[k + len - 1]) &&
           !dot_at(k + len, NULL, &start))
        len++;
    return len;
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
    /* (the root, last on the tape, has no reader here: it is no inner node) */
}

/* The instruction at tape position *k, its terms and links written to
   terms and links if not NULL, and *k moved past it. Its t0 and r0, where
   its terms and links start in the program's arrays, are prog_make's. */
static rg_instr instr_at(int32_t *k, rg_term *terms, rg_link *links)
{
    const int32_t *tape = A.tape;
    rg_instr in = { .start = -1 };
    in.n = dot_at(*k, terms, &in.start);
    *k += in.n ? 2 * in.n : 1;
    in.h = tape[*k - 1];
    in.tail = tail_at(*k);
    for (int32_t j = 0; links && j < in.tail; j++) {
        int32_t p = tape[*k + j - 1];
        const rg_node *z = &A.nodes[tape[*k + j]];
        int32_t other = z->op == RG_ADD || z->op == RG_MUL ? (z->a == p ? z->b : z->a) : -1;
        links[j] = (rg_link){ AT(tape[*k + j]), other < 0 ? 0 : AT(other) };
    }
    *k += in.tail;
    return in;
}

/* Makes the program from the tape: RG_OK, or RG_ENOMEM (none made). */
static int prog_make(void)
{
    int32_t T = A.tape_len, n = 0, nt = 0, nl = 0;
    if ((uint64_t)A.n * DOUBLES > UINT32_MAX) return RG_ENOMEM;   /* see AT */
    if (T == 0) {
        A.prog_len = 0;
        return RG_OK;
    }
    count_readers(1);
    for (int32_t k = 0; k < T; n++) {               /* sizes */
        rg_instr in = instr_at(&k, NULL, NULL);
        nt += in.n;
        nl += in.tail;
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
    if (nl > A.links_cap) {
        rg_link *l = rg_realloc(A.links, (size_t)nl * sizeof *l);
        if (!l) goto fail;
        A.links = l;
        A.links_cap = nl;
    }
    n = nt = nl = 0;
    for (int32_t k = 0; k < T; n++) {       /* (none of a kind: its array may be NULL) */
        rg_instr in = instr_at(&k, A.terms ? A.terms + nt : NULL,
                               A.links ? A.links + nl : NULL);
        in.t0 = nt;
        in.r0 = nl;
        nt += in.n;
        nl += in.tail;
        A.prog[n] = in;
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

/* A dot forward: each product, then each sum, as step() makes them (a
   product's int zero loses its sign: unsign()). Returns the last sum's
   value, its flags in *flags. (Each sum computes acc + p, whichever side
   its node has the product on: for all but NaNs, a + b is b + a to the
   bit.) */
static inline double dot_forward(rg_node *nodes, const rg_instr *in, unsigned *flags)
{
    const rg_term *t = A.terms + in->t0;
    const rg_node *s = &nodes[in->start];
    double acc = s->data;
    unsigned accf = s->flags;
    for (int32_t i = 0; i < in->n; i++) {
        rg_term tm = t[i];
        rg_node *m = NODE(nodes, tm.product), *a = NODE(nodes, tm.sum);
        const rg_node *x = NODE(nodes, tm.x), *y = NODE(nodes, tm.y);
        double p = x->data * y->data;
        unsigned mf = data_bits(m->flags, p, (unsigned)x->flags & y->flags);
        if (mf & F_IDATA) p += 0.0;     /* unsign(): x + -0.0 is x */
        m->data = p;
        m->grad = 0.0;
        m->flags = (uint8_t)mf;
        acc = acc + p;
        accf = data_bits(a->flags, acc, mf & accf);
        a->data = acc;
        a->grad = 0.0;
        a->flags = (uint8_t)accf;
    }
    *flags = accf;
    return acc;
}

/* One term of a dot backward: its sum, whose grad ga and flags *fa are
   given, passes them to the node before it (the sum before, or the start)
   and to its product, the product to its two factors. Returns the grad of
   the node before, its flags in *fa. With float_grad (*fa has no F_IGRAD:
   the grad passed down is a float in micrograd) every node it adds into
   gets a float grad, whatever it had (share() is then ~F_IGRAD), and the
   flags need no reads to compute. */
static inline double term_backward(rg_node *nodes, rg_term t, rg_node *before,
                                   double ga, unsigned *fa, int float_grad)
{
    rg_node *m = NODE(nodes, t.product);
    unsigned mask = float_grad ? ~(unsigned)F_IGRAD : *fa | ~(unsigned)F_IGRAD;  /* share(a, ALL) */
    double gb = before->grad + ga;
    unsigned fb = before->flags & mask;
    before->grad = gb;
    before->flags = (uint8_t)fb;
    double gm = m->grad + ga;
    unsigned fm = m->flags & mask;
    m->grad = gm;
    m->flags = (uint8_t)fm;
    rg_node *x = NODE(nodes, t.x), *y = NODE(nodes, t.y);
    unsigned mx = ~(unsigned)F_IGRAD, my = ~(unsigned)F_IGRAD;
    if (!float_grad) {      /* share(m, DATA_AS_GRAD(the other factor)), for each */
        mx |= fm & ((unsigned)y->flags << 1);
        my |= fm & ((unsigned)x->flags << 1);
    }
    x->grad += y->data * gm; x->flags &= (uint8_t)mx;
    y->grad += x->data * gm; y->flags &= (uint8_t)my;
    if (!float_grad) *fa = fb;
    return gb;
}

/* A dot backward, from its last sum down, whose grad ga and flags fa are
   given, as step() does node by node. The grad and flags of the sum being
   passed down stay in registers. Once that grad is a float it stays one
   (a float plus anything is a float), and the rest of the terms take
   term_backward's float_grad path. */
static inline void dot_backward(rg_node *nodes, const rg_instr *in, double ga, unsigned fa)
{
    const rg_term *t = A.terms + in->t0;
    rg_node *start = &nodes[in->start];
    int32_t i = in->n - 1;
    for (; i >= 0 && (fa & F_IGRAD); i--)
        ga = term_backward(nodes, t[i], i ? NODE(nodes, t[i - 1].sum) : start, ga, &fa, 0);
    for (; i > 0; i--)
        ga = term_backward(nodes, t[i], NODE(nodes, t[i - 1].sum), ga, &fa, 1);
    if (i == 0) term_backward(nodes, t[0], start, ga, &fa, 1);
}

/* The tail's ops by number, as tail_forward and link_backward test them. */
_Static_assert(RG_ADD == 1 && RG_MUL == 2 && RG_ADDC == 3 && RG_MULC == 4 &&
               RG_NEG == 5 && RG_RELU == 7, "the tail's ops are numbered as tested");

/* A tail forward: the len nodes of links l, each computed from the value v
   and flags vf of the node before it, as step() computes them. Each link
   is read whole at the top of its step: read in two parts, its other child
   inside the switch, the chain's forward once took five times as long
   (measured before the jump table below was found: it may have been that).
   The op is tested bit by bit and by range, not by a switch or a chain of
   ==, which GCC and Clang compile to a jump table: one indirect jump a
   node, whose targets alternate along the chain (MULC, ADD), ran some
   builds' chain at 6 to 11 ns a node, against 1.3 to 2.1 with these
   conditional branches (depending on where the code lands: GCC's forward
   11.3 ns, Clang's backward 6.0-6.9 ns, where the tests in this order gave
   1.4 and 1.5). */
static inline void tail_forward(rg_node *nodes, const rg_link *l, int32_t len,
                                double v, unsigned vf)
{
    for (int32_t j = 0; j < len; j++) {
        rg_link lj = l[j];
        rg_node *z = NODE(nodes, lj.z);
        unsigned f;
        unsigned op = z->op;
        if (op <= RG_MULC) {                /* ADD MUL ADDC MULC: v + or * x */
            double x;
            unsigned k;                     /* x's F_IDATA */
            if (op <= RG_MUL) {
                const rg_node *o = NODE(nodes, lj.other);
                x = o->data;
                k = o->flags;
            } else {
                x = z->arg;
                k = (unsigned)z->flags >> 2;
            }
            if (op & 1) {                   /* ADD, ADDC */
                v = v + x;
                f = data_bits(z->flags, v, vf & k);
            } else {                        /* MUL, MULC */
                v = v * x;
                f = data_bits(z->flags, v, vf & k);
                if (f & F_IDATA) v += 0.0;  /* unsign(): x + -0.0 is x */
            }
        } else if (op == RG_RELU) {
            int below = v < 0.0;
            v = below ? 0.0 : v;
            f = data_bits(z->flags, v, below ? F_IDATA : vf);
        } else {                            /* RG_NEG (follows() lets no other op in) */
            v = -v;
            f = data_bits(z->flags, v, vf);
            if (f & F_IDATA) v += 0.0;      /* unsign(): x + -0.0 is x */
        }
        z->data = v;
        z->grad = 0.0;
        z->flags = (uint8_t)f;
        vf = f;
    }
}

/* One node of a tail backward: node z of link l (read whole, and its op
   tested without a jump table: see tail_forward), whose grad g and flags *fz
   are given, adds its part into the grad of the node before it, pv, and,
   for ADD and MUL, into its other child, as step() does. Returns pv's grad,
   its flags in *fz. */
static inline double link_backward(rg_node *nodes, rg_link l, rg_node *pv,
                                   double g, unsigned *fz)
{
    const rg_node *z = NODE(nodes, l.z);
    unsigned f = *fz, mask = f | ~(unsigned)F_IGRAD;    /* share(z, ALL) */
    double c;
    unsigned op = z->op;
    if (op <= RG_MULC) {                /* ADD MUL ADDC MULC */
        if (op & 1) {                   /* ADD, ADDC */
            if (op == RG_ADD) {
                rg_node *o = NODE(nodes, l.other);
                o->grad += g; o->flags &= (uint8_t)mask;
            }
            c = g;
        } else if (op == RG_MUL) {      /* share(z, DATA_AS_GRAD(the other child)), for each */
            rg_node *o = NODE(nodes, l.other);
            unsigned mo = (f & ((unsigned)pv->flags << 1)) | ~(unsigned)F_IGRAD;
            mask = (f & ((unsigned)o->flags << 1)) | ~(unsigned)F_IGRAD;
            c = o->data * g;
            o->grad += pv->data * g; o->flags &= (uint8_t)mo;
        } else {                        /* MULC: share(z, ARG_AS_GRAD(z)) */
            mask = (f & (f >> 1)) | ~(unsigned)F_IGRAD;
            c = z->arg * g;
        }
    } else if (op == RG_RELU) {
        c = (z->data > 0.0 ? 1.0 : 0.0) * g;
    } else {                            /* RG_NEG */
        c = -g;
    }
    g = pv->grad + c;
    f = pv->flags & mask;
    pv->grad = g;
    pv->flags = (uint8_t)f;
    *fz = f;
    return g;
}

/* A tail backward, from its last node down to the node before it, h: each
   node passes its part down, the running grad and flags in registers.
   Returns h's grad, its flags in *flags. */
static inline double tail_backward(rg_node *nodes, const rg_link *l, int32_t len,
                                   rg_node *h, unsigned *flags)
{
    const rg_node *z = NODE(nodes, l[len - 1].z);
    double g = z->grad;
    unsigned f = z->flags;
    for (int32_t j = len - 1; j > 0; j--)
        g = link_backward(nodes, l[j], NODE(nodes, l[j - 1].z), g, &f);
    g = link_backward(nodes, l[0], h, g, &f);
    *flags = f;
    return g;
}

int replay_ready(void)
{
    return A.prog_len >= 0 || prog_make() == RG_OK;
}

int replay_forward(rg_node *nodes)
{
    for (int32_t k = 0; k < A.prog_len; k++) {
        const rg_instr *in = &A.prog[k];
        double v;
        unsigned vf;
        if (in->n > 0) {
            v = dot_forward(nodes, in, &vf);
        } else {
            rg_node *z = &nodes[in->h];
            z->grad = 0.0;
            int rc = step(nodes, z, FWD);
            if (rc != RG_OK) return rc;
            v = z->data;
            vf = z->flags;
        }
        if (in->tail) tail_forward(nodes, A.links + in->r0, in->tail, v, vf);
    }
    return RG_OK;
}

void replay_backward(rg_node *nodes)
{
    for (int32_t k = A.prog_len - 1; k >= 0; k--) {
        const rg_instr *in = &A.prog[k];
        rg_node *h = &nodes[in->h];
        double g;
        unsigned f;
        if (in->tail) {
            g = tail_backward(nodes, A.links + in->r0, in->tail, h, &f);
        } else {
            g = h->grad;
            f = h->flags;
        }
        if (in->n > 0) dot_backward(nodes, in, g, f);
        else step(nodes, h, BWD);
    }
}

int32_t rg_replay_program(void)
{
    arena_lock(&A.lock);
    int32_t n = A.prog_len;
    rg_mutex_unlock(&A.lock);
    return n;
}
