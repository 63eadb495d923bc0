/* arena.h: what the C files of rgrad share (not part of the API): the node,
   the arena, and the functions that make and bind nodes. rgrad.c holds the
   arena, the ops, backward and replay; collect.c collection; objects.c what
   Python sees of the graph (one handle per node, children, rewiring). */
#ifndef RGRAD_ARENA_H
#define RGRAD_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "rgrad.h"

typedef struct {
    double data;   /* forward value */
    double grad;   /* d root / d this node, accumulated by backward */
    double arg;    /* constant operand (ADDC MULC RPOWC) or exponent (POW) */
    int32_t a, b;  /* children: node indices below this one, -1 where absent */
    uint32_t id_lo;  /* creation serial, 48 bits (id_lo, id_hi): it survives */
    uint16_t id_hi;  /* compaction, so it is the node's hash and Python's key */
    uint8_t op;
    uint8_t flags;   /* F_ bits, below */
} rg_node;

/* F_IDATA, F_IGRAD and F_IARG follow micrograd's Python ints: whether its data,
   its grad and its constant would be an int there (Value(2) is Value(data=2,
   grad=0); a grad that received only int contributions stays an int). Python
   reads a value back as an int where its bit is set and it is a whole number
   below 2**53. The ops keep the bits in step() (ops.h); F_IGRAD is
   F_IDATA << 1 and F_IARG is F_IDATA << 2, so that a bit of one selects
   the other with a shift. */
enum {
    F_PY = 1,       /* Python keeps something under this node's id */
    F_HASPY = 2,    /* an RG_PY node is this node or below it: backward needs Python */
    F_IDATA = 4,    /* data is an int in micrograd */
    F_IGRAD = 8,    /* grad is an int in micrograd */
    F_IARG = 16     /* the constant operand (arg) is an int in micrograd */
};

static inline uint64_t node_id(const rg_node *z)
{
    return (uint64_t)z->id_hi << 32 | z->id_lo;
}

_Static_assert(sizeof(rg_node) == 40, "a node is 40 bytes");

/* The highest j < i whose mark is set, where one is (rgrad.c). The walks
   down the arena from a root (tape_for, rg_backward, higher.c, objects.c)
   visit the marked nodes only; between a graph and the leaves it reaches
   lie the dead nodes of earlier graphs that no compaction has freed yet,
   and this passes them eight at a time. */
RG_INTERNAL int32_t skip_unmarked(const uint8_t *mark, int32_t i);

/* Marks node j, counting it among the marked nodes not yet visited. */
static inline void mark_one(uint8_t *mark, int32_t j, int32_t *pending)
{
    if (j >= 0 && !mark[j]) {
        mark[j] = 1;
        (*pending)++;
    }
}

#define GC_MIN_NODES (1 << 17)   /* never compact an arena smaller than this */
#define SLOT_FREE (-1)           /* slot_node of a handle not in use */
#define SLOT_DEAD (-2)           /* of a handle in use whose node was freed */
#define SLOT_CLAIMED (-3)        /* of a handle the call in progress is binding */
#define SLOT_WEAK 1              /* slot_weak: not a root in this compaction (rg_collect) */
#define SLOT_KEEP 2              /* slot_weak: handed out by _prev, so its Value lives as
                                    long as the node (rg_sweep), as micrograd's would */

/* An instruction of replay's program (tape.c): a head, then a tail. The
   head is a dot of n multiply-adds, terms[t0 .. t0 + n), added to node
   start (n > 0), or node h run by step() (n == 0); h is the head's last
   node. The tail is the `tail` nodes links[r0 ..], each reading the node
   before it (the first, h). */
typedef struct {
    int32_t n, t0, start, h, r0, tail;
} rg_instr;

/* A dot's term: a product node, its two factors, and the sum node that
   adds it. */
typedef struct {
    uint32_t product, sum, x, y;   /* where each node starts, in doubles (tape.c) */
} rg_term;

/* A tail's node z, and its child other than the node before it (0 where it
   has none: read only for ADD and MUL), each where it starts, in doubles (tape.c). */
typedef struct {
    uint32_t z, other;
} rg_link;

typedef struct {
    rg_mutex lock;
    rg_node *nodes;
    uint8_t *mark;       /* one per node slot of capacity; all zero between calls */
    int32_t n, cap;
    int32_t gc_at;       /* compact when n reaches this */
    int32_t live;        /* nodes kept by the last compaction */
    int64_t collections;
    uint64_t next_id;
    int32_t max_nodes;   /* the node budget (rg_set_max_nodes) */
    int check;           /* anomaly mode of the thread holding the lock (push) */
    uint64_t anomaly_ids;    /* ids given to threads entering anomaly mode */
    int32_t anomaly_open;    /* blocks open, in all threads */
    uint64_t *closed;        /* ids of threads one of whose blocks another thread closed */
    int32_t n_closed, closed_cap;   /* closed_cap >= n_closed + anomaly_open */
    int32_t n_py;        /* RG_PY nodes in the arena */
    int64_t n_flagged;   /* nodes with F_PY, or more (counted as each is set,
                            recounted by compaction): when the nodes compaction
                            keeps hold as many, no dead node has F_PY, and it
                            reads none */
    int haspy_stale;     /* a node with parents became RG_PY: F_HASPY is not to
                            be trusted until the next compaction recomputes it */
    int32_t pinned;      /* > 0: Python walks a tape of node indices; no compaction */
    int64_t edits;       /* nodes given new children or made Python ops (batch.c) */
    uint64_t *dead_ids;  /* ids of F_PY nodes compaction freed, for Python to forget */
    int32_t n_dead, dead_cap;
    /* Handles: Python chooses which free slot a new node is bound to (it keeps
       the free list and the registry of Value objects, rgrad/engine.py); C
       checks each slot it is given and binds it. */
    int32_t *slot_node;  /* handle -> node index, or SLOT_FREE, SLOT_DEAD, SLOT_CLAIMED */
    uint8_t *slot_weak;  /* each handle's SLOT_WEAK and SLOT_KEEP bits (above) */
    int32_t nslots, slot_cap;
    int32_t in_use;      /* handles bound to a node, or dead (SLOT_DEAD) */
    /* Replay tape: the non-leaf nodes tape_root depends on, in creation order.
       Nodes never change their children, so it stays right until a compaction
       moves them (tape_gen is the compaction count it was built at). */
    int32_t *tape;
    int32_t tape_len, tape_cap, tape_root;
    int64_t tape_gen;
    /* Replay's program (tape.c): the tape with its chains fused, made from
       it when replay first needs it (prog_len < 0: not made for this tape). */
    rg_instr *prog;
    rg_term *terms;
    rg_link *links;
    int32_t prog_len, prog_cap, terms_cap, links_cap;
} rg_arena;

extern RG_INTERNAL rg_arena A;

/* Gives node z the F_PY bit (Python keeps something under its id), counted
   in A.n_flagged the first time: compaction reads dead nodes only when it
   keeps fewer such nodes than are counted (collect.c). */
static inline void flag_py(rg_node *z)
{
    A.n_flagged += !(z->flags & F_PY);
    z->flags |= F_PY;
}

/* The node handle h names, or a negative SLOT_ value (or -1 out of range). */
static inline int32_t node_of(int32_t h)
{
    if (h < 0 || h >= A.nslots) return -1;
    return A.slot_node[h];
}


/* tape.c, called with the lock held and the tape made (rgrad.c, tape_for):
   whether replay's program is made (it is made now if not; 0: no memory),
   then replay by it, forward (stops at the first op that fails, with its
   result code) and backward. */
RG_INTERNAL int replay_ready(void);
RG_INTERNAL int replay_forward(rg_node *nodes);
RG_INTERNAL void replay_backward(rg_node *nodes);

/* rgrad.c; all called with the lock held */
RG_INTERNAL void *rg_realloc(void *p, size_t size);   /* realloc, or a fault for a test */
RG_INTERNAL int arity(int op);
RG_INTERNAL int reserve_nodes(int64_t k);
RG_INTERNAL int grow_slots(int64_t top);
RG_INTERNAL int claim_slots(const int32_t *hs, int32_t k);
RG_INTERNAL void unclaim_slots(const int32_t *hs, int32_t k);
RG_INTERNAL void bind_slot(int32_t h, int32_t i);
RG_INTERNAL int collection_due(void);
/* Takes m (the arena's lock, or a Batch's). If another thread holds it,
   waits through rg_blocking (rgrad.h) until it is free, then tries again. */
RG_INTERNAL void lock_slow(rg_mutex *m);
static inline void arena_lock(rg_mutex *m)
{
    if (!rg_mutex_trylock(m)) lock_slow(m);
}

RG_INTERNAL int push_node(int op, int32_t a, int32_t b, double arg);
RG_INTERNAL int push_node_k(int op, int32_t a, int32_t b, double arg, uint8_t kind);
RG_INTERNAL void lock_to_make(void);   /* takes the lock */
RG_INTERNAL int rg_step(rg_node *nodes, rg_node *z, int backward);   /* one op's step */

/* higher.c */
RG_INTERNAL int nodes_under(const int32_t *outs, int32_t nout, int32_t **list, int32_t *count);

/* objects.c */
RG_INTERNAL int nodemap_reserve(int64_t slots);
RG_INTERNAL void nodemap_put(int32_t i, int32_t h);
RG_INTERNAL void nodemap_del(int32_t i, int32_t h);
RG_INTERNAL void nodemap_rebuild(void);

#endif
