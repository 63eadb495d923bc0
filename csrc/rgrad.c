/* rgrad.c: the arena of nodes, making them, backward and replay's tape. Each
   op's forward value and local derivatives are in ops.h; replay runs the
   tape through tape.c; collect.c reclaims dead nodes.

   Nodes are appended in creation order, so each node's children sit at lower
   indices: creation order is a topological order. Backward marks what the root
   reaches and walks indices downward once. Collection slides the live nodes
   down without reordering them, so this stays true.

   Python holds handles (slots of the handle table), never node indices. One
   mutex guards everything, as long calls run without the GIL (gil.h).
   Nothing here prints or exits: every failure is a result code. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "ops.h"

/* Anomaly mode, per thread: ops check their results, and the first NaN or
   infinity is described here for Python. A thread that enters the mode gets an
   id, never reused, and counts its open blocks in depth (see anomaly_on). */
static RG_THREAD_LOCAL struct { uint64_t id; int32_t depth; } me;
static RG_THREAD_LOCAL rg_anomaly_info last_anomaly;

rg_arena A = {
    .lock = RG_MUTEX_INIT,
    .max_nodes = INT32_MAX,
    .tape_root = -1,
    .prog_len = -1,
    .gc_at = GC_MIN_NODES,
};

/* ---- allocation ----------------------------------------------------------- */

/* Every allocation goes through rg_realloc, so that a test can make the Nth
   one fail (rg_fault_after) and check that each failure is survived. It costs
   a counter: allocations happen only when something grows. Called with the
   lock held. */
static int64_t fault_countdown = -1;   /* allocations to let through; < 0: all */
static int64_t allocations;            /* made since the last rg_fault_after */

void *rg_realloc(void *p, size_t size)
{
    allocations++;
    if (fault_countdown >= 0 && fault_countdown-- == 0) return NULL;
    return realloc(p, size);
}

int64_t rg_fault_after(int64_t n)
{
    arena_lock(&A.lock);
    int64_t made = allocations;
    allocations = 0;
    fault_countdown = n;
    rg_mutex_unlock(&A.lock);
    return made;
}

int rg_step(rg_node *nodes, rg_node *z, int backward)
{
    return step(nodes, z, backward ? BWD : FWD);
}

int arity(int op)
{
    switch (op) {
    case RG_LEAF: return 0;
    case RG_ADD: case RG_MUL: case RG_POWV: case RG_POWVU: return 2;
    case RG_PY: return -1;   /* any number: see children() */
    default: return 1;
    }
}

/* ---- anomaly mode ----------------------------------------------------------- */

static void describe(const rg_node *z, int backward, double bad)
{
    rg_anomaly_info *d = &last_anomaly;
    d->op = z->op;
    d->arg = z->arg;
    d->backward = backward;
    d->value = bad;
    d->nin = 0;
    if (z->a >= 0) d->inp[d->nin++] = A.nodes[z->a].data;
    if (z->b >= 0 && z->op != RG_PY) d->inp[d->nin++] = A.nodes[z->b].data;
    d->out = z->data;
    d->grad = z->grad;
}

/* Whether z's forward result is finite; if not, describes it. */
static int finite_forward(const rg_node *z)
{
    if (isfinite(z->data)) return 1;
    describe(z, 0, z->data);
    return 0;
}

/* Whether the grads z's backward step left in its children are finite. */
static int finite_backward(const rg_node *z)
{
    const rg_node *x = z->a >= 0 ? &A.nodes[z->a] : NULL;
    const rg_node *y = z->b >= 0 ? &A.nodes[z->b] : NULL;
    if (x && !isfinite(x->grad)) { describe(z, 1, x->grad); return 0; }
    if (y && !isfinite(y->grad)) { describe(z, 1, y->grad); return 0; }
    return 1;
}

/* A block closed on another thread than the one that opened it cannot reach
   that thread's storage: it leaves the opener's id in A.closed instead, and
   the opener settles it here, the next time it looks at its mode. (A note for
   a thread that has ended stays, 8 bytes, since no thread will settle it.) */
static int anomaly_on(void)
{
    if (A.n_closed && me.id) {
        for (int32_t k = A.n_closed - 1; k >= 0; k--)
            if (A.closed[k] == me.id) {
                if (me.depth > 0) me.depth--;
                A.closed[k] = A.closed[--A.n_closed];
            }
    }
    return me.depth > 0;
}

int64_t rg_anomaly_enter(void)
{
    int64_t rc;
    arena_lock(&A.lock);
    anomaly_on();
    /* room for a note for every open block, so that closing one never fails */
    if (A.closed_cap < (int64_t)A.n_closed + A.anomaly_open + 1) {
        int32_t cap = A.closed_cap ? 2 * A.closed_cap : 16;
        uint64_t *closed = rg_realloc(A.closed, (size_t)cap * sizeof *closed);
        if (!closed) { rc = RG_ENOMEM; goto out; }
        A.closed = closed;
        A.closed_cap = cap;
    }
    if (!me.id) me.id = ++A.anomaly_ids;
    me.depth++;
    A.anomaly_open++;
    rc = (int64_t)me.id;
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_anomaly_exit(int64_t token)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    anomaly_on();               /* notes for this thread first: depth is exact */
    if (token <= 0 || (uint64_t)token > A.anomaly_ids || A.anomaly_open <= 0)
        rc = RG_EHANDLE;
    else if ((uint64_t)token != me.id)
        A.closed[A.n_closed++] = (uint64_t)token;
    else if (me.depth > 0)
        me.depth--;
    else
        rc = RG_EHANDLE;        /* more exits than enters on this thread */
    if (rc == RG_OK) A.anomaly_open--;
    rg_mutex_unlock(&A.lock);
    return rc;
}

void rg_anomaly_info_get(rg_anomaly_info *out)
{
    *out = last_anomaly;
}

/* ---- handles and the arena (all called with the lock held) --------------- */

/* Room for k more nodes, within the budget. Past the budget, asks Python for
   a collection first if one could free anything. */
int reserve_nodes(int64_t k)
{
    if (A.n + k > A.max_nodes) {
        if (A.n == A.live || A.pinned) return RG_EBUDGET;
        A.gc_at = A.n;          /* due now: rg_collect will compact */
        return RG_COLLECT;
    }
    if (A.n + k <= A.cap) return RG_OK;
    int64_t cap = A.cap ? A.cap : 1024;
    while (cap < A.n + k) cap *= 2;
    if (cap > INT32_MAX) return RG_ENOMEM;
    rg_node *nodes = rg_realloc(A.nodes, (size_t)cap * sizeof *nodes);
    if (!nodes) return RG_ENOMEM;
    A.nodes = nodes;
    uint8_t *mark = rg_realloc(A.mark, (size_t)cap);
    if (!mark) return RG_ENOMEM;   /* the node array grew: harmless, cap stays */
    memset(mark + A.cap, 0, (size_t)(cap - A.cap));
    A.mark = mark;
    A.cap = (int32_t)cap;
    return RG_OK;
}

/* Slots [0, top) exist (new ones free). */
int grow_slots(int64_t top)
{
    if (top <= A.nslots) return RG_OK;
    if (top > A.slot_cap) {
        int64_t cap = A.slot_cap ? A.slot_cap : 1024;
        while (cap < top) cap *= 2;
        if (cap > INT32_MAX) return RG_ENOMEM;
        int32_t *sn = rg_realloc(A.slot_node, (size_t)cap * sizeof *sn);
        if (!sn) return RG_ENOMEM;
        A.slot_node = sn;
        uint8_t *weak = rg_realloc(A.slot_weak, (size_t)cap);
        if (!weak) return RG_ENOMEM;
        A.slot_weak = weak;
        int rc = nodemap_reserve(cap);
        if (rc != RG_OK) return rc;
        A.slot_cap = (int32_t)cap;
    }
    for (int64_t h = A.nslots; h < top; h++) {
        A.slot_node[h] = SLOT_FREE;
        A.slot_weak[h] = 0;
    }
    A.nslots = (int32_t)top;
    return RG_OK;
}

void unclaim_slots(const int32_t *hs, int32_t k)
{
    for (int32_t i = 0; i < k; i++) A.slot_node[hs[i]] = SLOT_FREE;
}

/* Claims the k slots Python chose for new handles: each must be free (and
   they distinct). All or nothing; unclaim_slots() gives them back. */
int claim_slots(const int32_t *hs, int32_t k)
{
    int64_t top = 0;
    for (int32_t i = 0; i < k; i++) {
        if (hs[i] < 0 || hs[i] == INT32_MAX) return RG_EHANDLE;
        if (hs[i] >= top) top = (int64_t)hs[i] + 1;
    }
    int rc = grow_slots(top);
    if (rc != RG_OK) return rc;
    for (int32_t i = 0; i < k; i++) {
        if (A.slot_node[hs[i]] != SLOT_FREE) {
            unclaim_slots(hs, i);
            return RG_EHANDLE;
        }
        A.slot_node[hs[i]] = SLOT_CLAIMED;
    }
    return RG_OK;
}

/* Binds claimed handle h to node i. */
void bind_slot(int32_t h, int32_t i)
{
    A.slot_node[h] = i;
    A.slot_weak[h] = 0;
    A.in_use++;
    nodemap_put(i, h);
}

/* Whether a call that makes nodes must first let Python collect (it finds
   which Values died, then calls rg_collect). */
int collection_due(void)
{
    return A.n >= A.gc_at && !A.pinned;
}

/* Appends node z = op(a, b; arg) and computes its value; reserve_nodes() has
   made room. Not committed (A.n unchanged) if the op fails. */
int push_node(int op, int32_t a, int32_t b, double arg)
{
    return push_node_k(op, a, b, arg, 0);
}

/* push_node, with the int bits (arena.h) of what Python gave: F_IDATA for a
   leaf's or a Python op's data, F_IARG for a constant operand. Its grad, 0,
   starts as an int, as micrograd's does. push_node_k is this, called;
   build_layer inlines it with a constant op, so that step()'s switch folds
   away (less than half the instructions a node). */
RG_ALWAYS_INLINE int push_inline(int op, int32_t a, int32_t b, double arg, uint8_t kind)
{
    rg_node *z = &A.nodes[A.n];
    if ((kind & F_IDATA) && !exact_int(arg)) kind &= (uint8_t)~F_IDATA;   /* as idata */
    *z = (rg_node){ .data = arg, .grad = 0.0, .arg = arg, .a = a, .b = b,
                    .id_lo = (uint32_t)A.next_id, .id_hi = (uint16_t)(A.next_id >> 32),
                    .op = (uint8_t)op, .flags = (uint8_t)(kind | F_IGRAD) };
    int rc = op == RG_PY ? RG_OK : step(A.nodes, z, FWD);  /* Python gave its data */
    if (rc != RG_OK) return rc;
    z->flags |= (uint8_t)((op == RG_PY ? F_HASPY : 0) |
                          (a >= 0 ? A.nodes[a].flags & F_HASPY : 0) |
                          (b >= 0 ? A.nodes[b].flags & F_HASPY : 0));
    if (A.check && op != RG_LEAF && op != RG_LINK && op != RG_PY && !finite_forward(z))
        return RG_EANOMALY;
    A.next_id++;
    A.n++;
    return RG_OK;
}

int push_node_k(int op, int32_t a, int32_t b, double arg, uint8_t kind)
{
    return push_inline(op, a, b, arg, kind);
}

static void run_blocking(void (*fn)(void *), void *arg) { fn(arg); }
void (*rg_blocking)(void (*fn)(void *), void *arg) = run_blocking;

static void wait_until_free(void *m)
{
    rg_mutex_lock(m);
    rg_mutex_unlock(m);
}

/* Waits, through rg_blocking, until m is free, and tries again: the lock is
   never held while rg_blocking takes the GIL back. (Not for fork_prepare:
   the GIL must stay with the thread that forks.) */
void lock_slow(rg_mutex *m)
{
    while (!rg_mutex_trylock(m)) rg_blocking(wait_until_free, m);
}

/* Takes the lock for a call that makes nodes. The thread's anomaly mode is
   read here, once: thread-local storage costs a call per access in a
   shared library. */
void lock_to_make(void)
{
    arena_lock(&A.lock);
    A.check = anomaly_on();
}

/* Makes node op(a, b; arg) and binds handle h to it. */
static int make_k(int32_t h, int op, int32_t ha, int32_t hb, double arg, uint8_t kind)
{
    int rc;
    lock_to_make();
    if (collection_due()) { rc = RG_COLLECT; goto out; }
    int32_t a = -1, b = -1;
    int k = arity(op);
    if (k >= 1 && (a = node_of(ha)) < 0) { rc = RG_EHANDLE; goto out; }
    if (k == 2 && (b = node_of(hb)) < 0) { rc = RG_EHANDLE; goto out; }
    if ((rc = reserve_nodes(1)) != RG_OK || (rc = claim_slots(&h, 1)) != RG_OK)
        goto out;
    if ((rc = push_node_k(op, a, b, arg, kind)) != RG_OK) {
        unclaim_slots(&h, 1);
        goto out;
    }
    bind_slot(h, A.n - 1);
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

static int make(int32_t h, int op, int32_t ha, int32_t hb, double arg)
{
    return make_k(h, op, ha, hb, arg, 0);
}

int rg_leaf(int32_t h, double x, int isint)
{
    return make_k(h, RG_LEAF, -1, -1, x, isint ? F_IDATA : 0);
}
int rg_add(int32_t h, int32_t a, int32_t b) { return make(h, RG_ADD, a, b, 0.0); }
int rg_mul(int32_t h, int32_t a, int32_t b) { return make(h, RG_MUL, a, b, 0.0); }
int rg_addc(int32_t h, int32_t a, double c) { return make(h, RG_ADDC, a, -1, c); }
int rg_subc(int32_t h, int32_t a, double c) { return make(h, RG_ADDC, a, -1, -c); }  /* a + (-c) is a - c */
int rg_mulc(int32_t h, int32_t a, double c) { return make(h, RG_MULC, a, -1, c); }
int rg_neg(int32_t h, int32_t a) { return make(h, RG_NEG, a, -1, 0.0); }
int rg_pow(int32_t h, int32_t a, double k) { return make(h, RG_POW, a, -1, k); }
int rg_relu(int32_t h, int32_t a) { return make(h, RG_RELU, a, -1, 0.0); }
int rg_tanh(int32_t h, int32_t a) { return make(h, RG_TANH, a, -1, 0.0); }
int rg_exp(int32_t h, int32_t a) { return make(h, RG_EXP, a, -1, 0.0); }
int rg_log(int32_t h, int32_t a) { return make(h, RG_LOG, a, -1, 0.0); }
int rg_sigmoid(int32_t h, int32_t a) { return make(h, RG_SIGMOID, a, -1, 0.0); }
int rg_softplus(int32_t h, int32_t a) { return make(h, RG_SOFTPLUS, a, -1, 0.0); }
int rg_powv(int32_t h, int32_t a, int32_t b) { return make(h, RG_POWV, a, b, 0.0); }
int rg_rpowc(int32_t h, int32_t a, double c) { return make(h, RG_RPOWC, a, -1, c); }
/* The same with an int constant (micrograd keeps it an int) */
int rg_addci(int32_t h, int32_t a, double c) { return make_k(h, RG_ADDC, a, -1, c, F_IARG); }
int rg_mulci(int32_t h, int32_t a, double c) { return make_k(h, RG_MULC, a, -1, c, F_IARG); }
int rg_powi(int32_t h, int32_t a, double k) { return make_k(h, RG_POW, a, -1, k, F_IARG); }
int rg_rpowci(int32_t h, int32_t a, double c) { return make_k(h, RG_RPOWC, a, -1, c, F_IARG); }

/* Composite ops are built as micrograd builds them, from two nodes: the inner
   one is an interior node like any other, whose grad accumulates across
   backward calls as micrograd's does. z = op2(x, w) for a binary op2 (x the
   node of hx), z = op2(w; arg2) for a unary one, where w = op1(u; arg1). */
static int make_via(int32_t h, int op1, int32_t hu, double arg1, int op2, int32_t hx,
                    double arg2, uint8_t kind2)
{
    int32_t rc, u, x = -1;
    lock_to_make();
    if (collection_due()) { rc = RG_COLLECT; goto out; }
    if ((u = node_of(hu)) < 0) { rc = RG_EHANDLE; goto out; }
    if (arity(op2) == 2 && (x = node_of(hx)) < 0) { rc = RG_EHANDLE; goto out; }
    if ((rc = reserve_nodes(2)) != RG_OK || (rc = claim_slots(&h, 1)) != RG_OK)
        goto out;
    /* op1's constant is micrograd's int -1 of x**-1, where it has one */
    if ((rc = push_node_k(op1, u, -1, arg1, F_IARG)) != RG_OK) {
        unclaim_slots(&h, 1);
        goto out;
    }
    int32_t w = A.n - 1;
    if ((rc = push_node_k(op2, x >= 0 ? x : w, x >= 0 ? w : -1, arg2, kind2)) != RG_OK) {
        A.n--;                  /* anomaly mode refused z: w goes too */
        unclaim_slots(&h, 1);
        goto out;
    }
    bind_slot(h, A.n - 1);
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_sub(int32_t h, int32_t a, int32_t b) { return make_via(h, RG_NEG, b, 0.0, RG_ADD, a, 0.0, 0); }
int rg_div(int32_t h, int32_t a, int32_t b) { return make_via(h, RG_POW, b, -1.0, RG_MUL, a, 0.0, 0); }
int rg_rsubc(int32_t h, int32_t a, double c) { return make_via(h, RG_NEG, a, 0.0, RG_ADDC, -1, c, 0); }
int rg_rdivc(int32_t h, int32_t a, double c) { return make_via(h, RG_POW, a, -1.0, RG_MULC, -1, c, 0); }
int rg_rsubci(int32_t h, int32_t a, double c)
{
    return make_via(h, RG_NEG, a, 0.0, RG_ADDC, -1, c, F_IARG);
}
int rg_rdivci(int32_t h, int32_t a, double c)
{
    return make_via(h, RG_POW, a, -1.0, RG_MULC, -1, c, F_IARG);
}

/* -1, read at run time: given pow(c, -1.0), compilers compute 1.0 / c, which
   is not always the last bit of what libm's pow (and so Python's c ** -1) gives */
static volatile double minus_one = -1.0;

int rg_divc(int32_t h, int32_t a, double c)
{
    /* a / c is a * c**-1, as micrograd computes it */
    double r;
    int rc = pow_checked(c, minus_one, &r);
    return rc != RG_OK ? rc : make(h, RG_MULC, a, -1, r);
}

/* ---- backward ------------------------------------------------------------ */

/* Whether the graph under node r holds an op defined in Python. */
static int needs_python(int32_t r)
{
    return (A.nodes[r].flags & F_HASPY) || (A.n_py > 0 && A.haspy_stale);
}

static int tape_holds(int32_t r)
{
    return A.tape_root == r && A.tape_gen == A.collections;
}

/* (arena.h) Out of line: inlined, it cost the walks' loops two instructions
   a node where every node is marked. */
int32_t skip_unmarked(const uint8_t *mark, int32_t i)
{
    i--;
    while (i >= 7) {
        uint64_t w;
        memcpy(&w, mark + i - 7, sizeof w);
        if (w) break;
        i -= 8;
    }
    while (!mark[i]) i--;
    return i;
}

/* Makes the tape the one for node r. The walk down stops at the last node r
   depends on, so its cost is the graph's, not the arena's. */
static int tape_for(int32_t r)
{
    if (tape_holds(r)) return RG_OK;
    rg_node *nodes = A.nodes;
    uint8_t *mark = A.mark;
    int32_t pending = 0, k = 0;
    A.tape_root = -1;                       /* not valid while it is rebuilt, */
    A.prog_len = -1;                        /* nor its program */
    mark_one(mark, r, &pending);
    for (int32_t i = r; pending > 0; i--) {
        if (!mark[i]) { i = skip_unmarked(mark, i) + 1; continue; }   /* i-- lands on it */
        mark[i] = 0;
        pending--;
        mark_one(mark, nodes[i].a, &pending);
        mark_one(mark, nodes[i].b, &pending);
        if (nodes[i].op == RG_LEAF || nodes[i].op == RG_LINK) continue;
        if (k == A.tape_cap) {
            int32_t cap = A.tape_cap ? 2 * A.tape_cap : 1024;
            int32_t *tape = rg_realloc(A.tape, (size_t)cap * sizeof *tape);
            if (!tape) {
                for (int32_t j = i - 1; pending > 0; j--)   /* leave no marks */
                    if (mark[j]) { mark[j] = 0; pending--; }
                return RG_ENOMEM;
            }
            A.tape = tape;
            A.tape_cap = cap;
        }
        A.tape[k++] = i;
    }
    for (int32_t lo = 0, hi = k - 1; lo < hi; lo++, hi--) {   /* creation order */
        int32_t t = A.tape[lo];
        A.tape[lo] = A.tape[hi];
        A.tape[hi] = t;
    }
    A.tape_len = k;
    A.prog_len = -1;                        /* made from it when replay needs it */
    A.tape_root = r;
    A.tape_gen = A.collections;
    return RG_OK;
}

int rg_backward(int32_t root)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    int32_t r = node_of(root);
    if (r >= 0 && needs_python(r)) {
        r = RG_PYGRAPH;                      /* Python walks it with rg_run */
    } else if (r >= 0) {
        rg_node *nodes = A.nodes;
        int check = anomaly_on();
        /* in anomaly mode, the tape is made first: if there is no memory for
           it, the error leaves the root's grad as it was */
        if (check) rc = tape_for(r);
        if (rc == RG_OK) {                  /* micrograd's int 1 */
            nodes[r].grad = 1.0;
            nodes[r].flags |= F_IGRAD;
        }
        if (check) {                         /* checked, node by node */
            for (int32_t k = A.tape_len - 1; rc == RG_OK && k >= 0; k--) {
                rg_node *z = &nodes[A.tape[k]];
                step(nodes, z, BWD);
                if (!finite_backward(z)) rc = RG_EANOMALY;
            }
        } else if (tape_holds(r) && replay_ready()) {   /* replayed: its program (tape.c) */
            replay_backward(nodes);
        } else {                             /* mark and walk down in one pass */
            uint8_t *mark = A.mark;
            int32_t pending = 0;
            mark_one(mark, r, &pending);
            for (int32_t i = r; pending > 0; i--) {
                if (!mark[i]) { i = skip_unmarked(mark, i) + 1; continue; }   /* i-- lands on it */
                mark[i] = 0;
                pending--;
                rg_node *z = &nodes[i];
                mark_one(mark, z->a, &pending);
                mark_one(mark, z->b, &pending);
                step(nodes, z, BWD);
            }
        }
    }
    rg_mutex_unlock(&A.lock);
    return r >= 0 ? rc : r == RG_PYGRAPH ? RG_PYGRAPH : RG_EHANDLE;
}

/* ---- replay ---------------------------------------------------------------- */

int rg_forward(int32_t root)
{
    int rc;
    arena_lock(&A.lock);
    int32_t r = node_of(root);
    if (r < 0) { rc = RG_EHANDLE; goto out; }
    if (needs_python(r)) { rc = RG_PYGRAPH; goto out; }   /* Python walks it with rg_run */
    if ((rc = tape_for(r)) != RG_OK) goto out;
    rg_node *nodes = A.nodes;
    int check = anomaly_on();
    if (!check && replay_ready()) {
        rc = replay_forward(nodes);          /* its program (tape.c) */
        goto out;
    }
    for (int32_t k = 0; k < A.tape_len && rc == RG_OK; k++) {   /* node by node */
        rg_node *z = &nodes[A.tape[k]];
        z->grad = 0.0;                      /* (step sets F_IGRAD: an int 0) */
        rc = step(nodes, z, FWD);
        if (check && rc == RG_OK && !finite_forward(z)) rc = RG_EANOMALY;
    }
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

/* ---- many nodes in one call ------------------------------------------------ */

int rg_leaves(const double *xs, int32_t n, const int32_t *hs)
{
    int rc;
    lock_to_make();
    if (n < 0) { rc = RG_EHANDLE; goto out; }
    if (collection_due()) { rc = RG_COLLECT; goto out; }
    if ((rc = reserve_nodes(n)) != RG_OK || (rc = claim_slots(hs, n)) != RG_OK)
        goto out;
    for (int32_t k = 0; k < n; k++) {
        push_node(RG_LEAF, -1, -1, xs[k]);
        bind_slot(hs[k], A.n - 1);
    }
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

/* Resolves n handles to node indices in place of a copy; RG_EHANDLE if any is dead. */
static int resolve(const int32_t *hs, int64_t n, int32_t *nodes_out)
{
    for (int64_t k = 0; k < n; k++)
        if ((nodes_out[k] = node_of(hs[k])) < 0) return RG_EHANDLE;
    return RG_OK;
}

/* Node n of a layer as push_inline() makes it when it is not checked (see
   build_layer): op(a, b; arg) with value v, made with the int bits `kind`
   (F_IARG or 0), whose children's flags ANDed are k (idata()), and which
   inherits hp (its children's F_HASPY). Nodes from A.n to n - 1 are made
   already; nodes is A.nodes and id0 is A.next_id - A.n, passed in: read from
   A here, they would be read again after every node, since the node's
   uint8_t fields may alias anything. Returns its flags. */
RG_ALWAYS_INLINE unsigned put_node(rg_node *nodes, uint64_t id0, int32_t n, int op,
                                   int32_t a, int32_t b, double arg, double *v,
                                   unsigned kind, unsigned k, unsigned hp)
{
    int isint = (k & F_IDATA) && exact_int(*v);
    if (isint && (op == RG_MUL || op == RG_MULC)) *v += 0.0;   /* unsign() */
    unsigned f = kind | F_IGRAD | (isint ? F_IDATA : 0u) | hp;
    uint64_t id = id0 + (uint64_t)n;
    nodes[n] = (rg_node){ .data = *v, .grad = 0.0, .arg = arg, .a = a, .b = b,
                          .id_lo = (uint32_t)id, .id_hi = (uint16_t)(id >> 32),
                          .op = (uint8_t)op, .flags = (uint8_t)f };
    return f;
}

/* One layer's nodes, as micrograd's neurons make them: act[j] = b[j] + w[j,0]*x[0]
   + ... (relu'd if relu), from node indices iw (nout x nin), ib, ix (-1: the
   constant xc[i], an int in micrograd where xint[i] is set); act gets the
   output nodes. Room for them was reserved. In anomaly mode each node is
   made and checked by push_inline(); otherwise each neuron's sum runs in
   registers (put_node), with the same values, bits and ids. */
static int build_layer(const int32_t *iw, const int32_t *ib, const int32_t *ix,
                       const double *xc, const uint8_t *xint, int32_t nin,
                       int32_t nout, int relu, int32_t *act_out)
{
    int rc = RG_OK;
    if (!A.check) {
        rg_node *nodes = A.nodes;
        int32_t n = A.n;
        uint64_t id0 = A.next_id - (uint64_t)n;
        for (int32_t j = 0; j < nout; j++) {
            int32_t act = ib[j];
            double acc = nodes[act].data;
            unsigned accf = nodes[act].flags;
            for (int32_t i = 0; i < nin; i++) {   /* act = act + w[j,i] * x[i] */
                int32_t wi = iw[(int64_t)j * nin + i];
                unsigned wf = nodes[wi].flags, pf;
                double p;
                if (ix[i] >= 0) {
                    const rg_node *x = &nodes[ix[i]];
                    p = nodes[wi].data * x->data;
                    pf = put_node(nodes, id0, n, RG_MUL, wi, ix[i], 0.0, &p, 0,
                                  wf & x->flags, (wf | x->flags) & F_HASPY);
                } else {
                    unsigned kind = xint && xint[i] ? F_IARG : 0;
                    p = nodes[wi].data * xc[i];
                    pf = put_node(nodes, id0, n, RG_MULC, wi, -1, xc[i], &p, kind,
                                  wf & (kind >> 2), wf & F_HASPY);
                }
                acc = acc + p;
                accf = put_node(nodes, id0, n + 1, RG_ADD, act, n, 0.0, &acc, 0,
                                accf & pf, (accf | pf) & F_HASPY);
                act = n + 1;
                n += 2;
            }
            if (relu) {
                int below = acc < 0.0;
                double r = below ? 0.0 : acc;
                put_node(nodes, id0, n, RG_RELU, act, -1, 0.0, &r, 0,
                         below ? F_IDATA : accf, accf & F_HASPY);
                act = n++;
            }
            act_out[j] = act;
        }
        A.next_id += (uint64_t)(n - A.n);
        A.n = n;
        return RG_OK;
    }
    for (int32_t j = 0; j < nout && rc == RG_OK; j++) {
        int32_t act = ib[j];
        for (int32_t i = 0; i < nin && rc == RG_OK; i++) {   /* act = act + w[j,i] * x[i] */
            int32_t wi = iw[(int64_t)j * nin + i];
            if ((rc = ix[i] >= 0 ? push_inline(RG_MUL, wi, ix[i], 0.0, 0)
                                 : push_inline(RG_MULC, wi, -1, xc[i],
                                               xint && xint[i] ? F_IARG : 0)) == RG_OK &&
                (rc = push_inline(RG_ADD, act, A.n - 1, 0.0, 0)) == RG_OK)
                act = A.n - 1;
        }
        if (relu && rc == RG_OK && (rc = push_inline(RG_RELU, act, -1, 0.0, 0)) == RG_OK)
            act = A.n - 1;
        act_out[j] = act;
    }
    return rc;
}

/* Node indices of the layers' weights and biases, then of x: resolved before
   anything is made (RG_EHANDLE if a handle is dead). x[i] == -1 with xc: a
   constant. idx must have room for sum(nin*nout + nout) + x's nin. */
static int resolve_layers(const int32_t *w, const int32_t *b, const int32_t *sizes,
                          int32_t nlayers, const int32_t *x, const double *xc, int32_t *idx)
{
    int64_t nw = 0, nb = 0;
    for (int32_t l = 0; l < nlayers; l++) {
        nw += (int64_t)sizes[l] * sizes[l + 1];
        nb += sizes[l + 1];
    }
    int rc;
    if ((rc = resolve(w, nw, idx)) != RG_OK || (rc = resolve(b, nb, idx + nw)) != RG_OK)
        return rc;
    int32_t *ix = idx + nw + nb;
    for (int32_t i = 0; i < sizes[0]; i++) {
        if (x[i] == -1 && xc) ix[i] = -1;
        else if ((ix[i] = node_of(x[i])) < 0) return RG_EHANDLE;
    }
    return RG_OK;
}

/* Layers one after another (sizes[0] inputs, sizes[l + 1] outputs of layer
   l; relu[l] for its nonlinearity): what calling each Layer in turn makes,
   in one call. Only the last layer's outputs get handles (out). All or
   nothing. */
int rg_mlp(const int32_t *w, const int32_t *b, const int32_t *sizes, int32_t nlayers,
           const uint8_t *relu, const int32_t *x, const double *xc, const uint8_t *xint,
           const int32_t *out)
{
    int rc;
    int32_t *idx = NULL;
    int64_t nodes = 0, nw = 0, nb = 0, widest = 0;
    lock_to_make();
    if (nlayers < 1) { rc = RG_EHANDLE; goto out; }
    for (int32_t l = 0; l <= nlayers; l++)
        if (sizes[l] < 0 || (l > 0 && sizes[l] < 1)) { rc = RG_EHANDLE; goto out; }
    for (int32_t l = 0; l < nlayers; l++) {
        nw += (int64_t)sizes[l] * sizes[l + 1];
        nb += sizes[l + 1];
        nodes += (int64_t)sizes[l + 1] * (2 * (int64_t)sizes[l] + (relu[l] != 0));
        if (sizes[l + 1] > widest) widest = sizes[l + 1];
    }
    if (collection_due()) { rc = RG_COLLECT; goto out; }
    /* w, b, x, then two rows of activations */
    idx = rg_realloc(NULL, (size_t)(nw + nb + sizes[0] + 2 * widest + 1) * sizeof *idx);
    if (!idx) { rc = RG_ENOMEM; goto out; }
    if ((rc = resolve_layers(w, b, sizes, nlayers, x, xc, idx)) != RG_OK) goto out;
    int32_t nout = sizes[nlayers];
    if ((rc = reserve_nodes(nodes)) != RG_OK || (rc = claim_slots(out, nout)) != RG_OK)
        goto out;
    int32_t n0 = A.n;
    const int32_t *iw = idx, *ib = idx + nw, *in = idx + nw + nb;
    int32_t *acts[2] = { idx + nw + nb + sizes[0], idx + nw + nb + sizes[0] + widest };
    const double *c = xc;
    const uint8_t *k = xint;
    for (int32_t l = 0; l < nlayers && rc == RG_OK; l++) {
        int32_t *act = acts[l & 1];
        rc = build_layer(iw, ib, in, c, k, sizes[l], sizes[l + 1], relu[l], act);
        iw += (int64_t)sizes[l] * sizes[l + 1];
        ib += sizes[l + 1];
        in = act;
        c = NULL;                   /* later layers' inputs are nodes */
        k = NULL;
    }
    if (rc != RG_OK) {          /* anomaly mode refused a node: undo it all */
        unclaim_slots(out, nout);
        A.n = n0;
    } else {
        for (int32_t j = 0; j < nout; j++) bind_slot(out[j], in[j]);
    }
out:
    rg_mutex_unlock(&A.lock);
    free(idx);
    return rc;
}

int rg_layer(const int32_t *w, const int32_t *b, const int32_t *x, const double *xc,
             const uint8_t *xint, int32_t nin, int32_t nout, int relu, const int32_t *out)
{
    int32_t sizes[2] = { nin, nout };
    uint8_t r = (uint8_t)(relu != 0);
    return rg_mlp(w, b, sizes, 1, &r, x, xc, xint, out);
}

static double *field(rg_node *z, int which)
{
    return which == RG_GRAD ? &z->grad : &z->data;
}

int rg_get_many(const int32_t *hs, int32_t n, int which, double *out)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    for (int32_t k = 0; k < n && rc == RG_OK; k++) {
        int32_t i = node_of(hs[k]);
        if (i < 0) rc = RG_EHANDLE;
        else out[k] = *field(&A.nodes[i], which);
    }
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_set_many(const int32_t *hs, int32_t n, int which, const double *xs)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    for (int32_t k = 0; k < n && rc == RG_OK; k++)
        if (node_of(hs[k]) < 0) rc = RG_EHANDLE;
    uint8_t bit = which == RG_GRAD ? F_IGRAD : F_IDATA;
    for (int32_t k = 0; k < n && rc == RG_OK; k++) {
        rg_node *z = &A.nodes[node_of(hs[k])];
        *field(z, which) = xs ? xs[k] : 0.0;
        z->flags = (uint8_t)((z->flags & ~bit) | (xs ? 0 : bit));   /* 0: an int */
    }
    rg_mutex_unlock(&A.lock);
    return rc;
}

/* ---- optimizers ---------------------------------------------------------- */

static int all_live(const int32_t *hs, int32_t n)
{
    for (int32_t k = 0; k < n; k++)
        if (node_of(hs[k]) < 0) return 0;
    return 1;
}

/* The gradient an optimizer steps on: grad + weight_decay * data, as in
   PyTorch (nothing is added without decay, so plain SGD is micrograd's). */
static double decayed_grad(const rg_node *p, double weight_decay)
{
    return weight_decay != 0.0 ? p->grad + weight_decay * p->data : p->grad;
}

int rg_sgd_step(const int32_t *params, int32_t n, double lr, double momentum,
                double weight_decay, double *velocity, int first)
{
    arena_lock(&A.lock);
    int ok = all_live(params, n);
    for (int32_t k = 0; ok && k < n; k++) {
        rg_node *p = &A.nodes[node_of(params[k])];
        double g = decayed_grad(p, weight_decay);
        if (velocity) {   /* buf = momentum buf + g; the first step starts it at g */
            velocity[k] = first ? g : momentum * velocity[k] + g;
            g = velocity[k];
        }
        p->data -= lr * g;
        p->flags &= (uint8_t)~F_IDATA;
    }
    rg_mutex_unlock(&A.lock);
    return ok ? RG_OK : RG_EHANDLE;
}

int rg_adam_step(const int32_t *params, int32_t n, double lr, double beta1,
                 double beta2, double eps, double weight_decay, int64_t step,
                 double *m, double *v)
{
    /* PyTorch's Adam: m, v are moving averages of g and g^2; the step is
       lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps) */
    double step_size = lr / (1.0 - pow(beta1, (double)step));
    double bc2_sqrt = sqrt(1.0 - pow(beta2, (double)step));
    arena_lock(&A.lock);
    int ok = all_live(params, n);
    for (int32_t k = 0; ok && k < n; k++) {
        rg_node *p = &A.nodes[node_of(params[k])];
        double g = decayed_grad(p, weight_decay);
        m[k] += (1.0 - beta1) * (g - m[k]);
        v[k] = v[k] * beta2 + (1.0 - beta2) * (g * g);
        p->data += -step_size * (m[k] / (sqrt(v[k]) / bc2_sqrt + eps));
        p->flags &= (uint8_t)~F_IDATA;
    }
    rg_mutex_unlock(&A.lock);
    return ok ? RG_OK : RG_EHANDLE;
}

/* ---- reading and writing nodes ------------------------------------------- */

int rg_valid(int32_t h)
{
    arena_lock(&A.lock);
    int ok = node_of(h) >= 0;
    rg_mutex_unlock(&A.lock);
    return ok;
}

/* Reads one field of h's node, or NaN for a dead handle. */
static double get(int32_t h, size_t field)
{
    double v = NAN;
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    if (i >= 0) memcpy(&v, (char *)&A.nodes[i] + field, sizeof v);
    rg_mutex_unlock(&A.lock);
    return v;
}

static int set(int32_t h, size_t field, double v, uint8_t bit, int isint)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    if (i >= 0) {
        rg_node *z = &A.nodes[i];
        memcpy((char *)z + field, &v, sizeof v);
        isint = isint && exact_int(v);
        z->flags = (uint8_t)((z->flags & ~bit) | (isint ? bit : 0));
    }
    rg_mutex_unlock(&A.lock);
    return i >= 0 ? RG_OK : RG_EHANDLE;
}

double rg_data(int32_t h) { return get(h, offsetof(rg_node, data)); }
double rg_grad(int32_t h) { return get(h, offsetof(rg_node, grad)); }
double rg_arg(int32_t h) { return get(h, offsetof(rg_node, arg)); }
int rg_set_data(int32_t h, double x, int isint)
{
    return set(h, offsetof(rg_node, data), x, F_IDATA, isint);
}

int rg_set_grad(int32_t h, double x, int isint)
{
    return set(h, offsetof(rg_node, grad), x, F_IGRAD, isint);
}

/* Whether h's data (which == RG_DATA) or grad reads back as an int: micrograd's
   would be one, and it is a whole number that a double holds exactly. */
int rg_isint(int32_t h, int which)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    int r = 0;
    if (i >= 0) {
        const rg_node *z = &A.nodes[i];
        double v = which == RG_GRAD ? z->grad : z->data;
        r = (z->flags & (which == RG_GRAD ? F_IGRAD : F_IDATA)) && exact_int(v) &&
            v == floor(v);
    }
    rg_mutex_unlock(&A.lock);
    return r;
}

int rg_op(int32_t h)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    int op = i >= 0 ? A.nodes[i].op : RG_EHANDLE;
    rg_mutex_unlock(&A.lock);
    return op;
}

int64_t rg_id(int32_t h)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    int64_t id = i >= 0 ? (int64_t)node_id(&A.nodes[i]) : RG_EHANDLE;
    rg_mutex_unlock(&A.lock);
    return id;
}

/* ---- ops defined in Python ------------------------------------------------ */

int rg_custom(int32_t h, double data, int isint, const int32_t *children, int32_t n)
{
    int32_t rc, *idx = NULL;
    lock_to_make();
    if (n < 0) { rc = RG_EHANDLE; goto out; }
    if (collection_due()) { rc = RG_COLLECT; goto out; }
    idx = rg_realloc(NULL, (size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) { rc = RG_ENOMEM; goto out; }
    if ((rc = resolve(children, n, idx)) != RG_OK) goto out;
    if ((rc = reserve_nodes(n > 2 ? n - 1 : 1)) != RG_OK || (rc = claim_slots(&h, 1)) != RG_OK)
        goto out;
    int32_t rest = n >= 2 ? idx[n - 1] : -1;   /* built from the last child back */
    for (int32_t k = n - 2; k >= 1; k--) {
        push_node(RG_LINK, idx[k], rest, 0.0);
        rest = A.n - 1;
    }
    push_node_k(RG_PY, n >= 1 ? idx[0] : -1, rest, data, isint ? F_IDATA : 0);
    flag_py(&A.nodes[A.n - 1]);
    A.n_py++;
    bind_slot(h, A.n - 1);
out:
    rg_mutex_unlock(&A.lock);
    free(idx);
    return rc;
}

int rg_make_custom(int32_t h)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    if (i >= 0 && A.nodes[i].op != RG_PY) {
        A.nodes[i].op = RG_PY;      /* its children stay; Python now runs it */
        A.edits++;
        flag_py(&A.nodes[i]);
        A.nodes[i].flags |= F_HASPY;
        A.n_py++;
        if (i != A.n - 1) A.haspy_stale = 1;   /* nodes made since may be parents */
        A.tape_root = -1;           /* a cached tape may hold this node */
    }
    rg_mutex_unlock(&A.lock);
    return i >= 0 ? RG_OK : RG_EHANDLE;
}

int rg_flag(int32_t h)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    if (i >= 0) flag_py(&A.nodes[i]);
    rg_mutex_unlock(&A.lock);
    return i >= 0 ? RG_OK : RG_EHANDLE;
}

int rg_node_backward(int32_t h)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    if (i < 0) rc = RG_EHANDLE;
    else if (A.nodes[i].op == RG_PY) rc = RG_PYGRAPH;
    else step(A.nodes, &A.nodes[i], BWD);
    rg_mutex_unlock(&A.lock);
    return rc;
}

/* The pins this thread holds, so that a forked child keeps only its own
   thread's pins (fork_child). */
static RG_THREAD_LOCAL int32_t pins_here;

int rg_pin(int delta)
{
    arena_lock(&A.lock);
    A.pinned += delta;
    pins_here += delta;
    rg_mutex_unlock(&A.lock);
    return RG_OK;
}

int32_t rg_tape(int32_t root, int32_t *out, int32_t cap)
{
    int32_t rc;
    arena_lock(&A.lock);
    int32_t r = node_of(root);
    if (r < 0) { rc = RG_EHANDLE; goto out; }
    if ((rc = tape_for(r)) != RG_OK) goto out;
    rc = A.tape_len;
    if (out && A.tape_len > 0 && cap >= A.tape_len)
        memcpy(out, A.tape, (size_t)A.tape_len * sizeof *out);
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_run(const int32_t *tape, int32_t n, int32_t *pos, int backward, uint64_t *id)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    int32_t k = *pos, dk = backward ? -1 : 1;
    int check = anomaly_on();
    for (; k >= 0 && k < n; k += dk) {
        int32_t i = tape[k];
        if (i < 0 || i >= A.n) { rc = RG_EHANDLE; break; }
        rg_node *z = &A.nodes[i];
        if (z->op == RG_PY) { rc = RG_PYGRAPH; *id = node_id(z); break; }
        if (!backward) z->grad = 0.0;       /* (step sets F_IGRAD: an int 0) */
        if ((rc = step(A.nodes, z, backward ? BWD : FWD)) != RG_OK) break;
        if (check && !(backward ? finite_backward(z) : finite_forward(z))) {
            rc = RG_EANOMALY;
            break;
        }
    }
    *pos = k;
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_same(int32_t h1, int32_t h2)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h1);
    int same = i >= 0 && i == node_of(h2);
    rg_mutex_unlock(&A.lock);
    return same;
}

/* ---- fork ---------------------------------------------------------------- */

#if RG_HAVE_FORK
/* fork() copies only the thread that calls it. Taking the mutex first means
   no other thread is halfway through a change to the arena as it is copied,
   and both processes then release it. In the child the other threads are
   gone, and so are their pins: a pin taken by a thread that will never drop
   it would stop compaction for good. The forking thread's own pins stay, as
   its walk goes on in the child and will drop them. */
static void fork_prepare(void) { rg_mutex_lock(&A.lock); }   /* GIL held: see lock_slow */
static void fork_parent(void) { rg_mutex_unlock(&A.lock); }

static void fork_child(void)
{
    A.pinned = pins_here;
    rg_mutex_unlock(&A.lock);
}

/* Registered as the library loads. Should registration fail (no memory at
   load time), forking works as it would without it. */
RG_ON_LOAD static void register_fork_handlers(void)
{
    (void)rg_at_fork(fork_prepare, fork_parent, fork_child);
}
#endif
