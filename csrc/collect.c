/* collect.c: reclaiming dead nodes. Python finds the handles whose Values
   died (rgrad/collection.py) and hands them to rg_collect, which frees
   them and, when the arena is due (it has doubled since the last
   compaction, and holds GC_MIN_NODES or more) or Python asks, compacts it:
   marks what the live handles reach, then slides the survivors down in
   order (so creation order stays a topological order) and renumbers child
   indices, handles and the node map. The ids of freed nodes that Python
   keeps something for go to Python through rg_peek_dead / rg_drop_dead.
   Also here: the handle table's trim, the node budget and the arena's
   statistics. */
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* Notes the id of a dead F_PY node for Python (rg_peek_dead). If there is no
   memory to note it, Python keeps a stale entry under an id never reused. */
static void forget(uint64_t id)
{
    if (A.n_dead == A.dead_cap) {
        int32_t cap = A.dead_cap ? 2 * A.dead_cap : 256;
        uint64_t *ids = rg_realloc(A.dead_ids, (size_t)cap * sizeof *ids);
        if (!ids) return;
        A.dead_ids = ids;
        A.dead_cap = cap;
    }
    A.dead_ids[A.n_dead++] = id;
}

int32_t rg_peek_dead(uint64_t *out, int32_t cap)
{
    arena_lock(&A.lock);
    int32_t n = A.n_dead < cap ? A.n_dead : cap;
    if (n > 0) memcpy(out, A.dead_ids + (A.n_dead - n), (size_t)n * sizeof *out);
    rg_mutex_unlock(&A.lock);
    return n;
}

void rg_drop_dead(int32_t k)
{
    arena_lock(&A.lock);
    if (k > 0) A.n_dead = k < A.n_dead ? A.n_dead - k : 0;
    rg_mutex_unlock(&A.lock);
}

/* Slides the nodes reachable from a live handle down to the bottom of the
   arena, in order, and rewrites child indices and handles to match. Dead
   nodes are read only where one may have F_PY (fewer marked nodes have it
   than A.n_flagged counts): otherwise both passes skip them on the mark
   bytes alone, which matters when a step's whole graph has died (the demo
   step's 65,000 nodes, 2.6 MB). */
static void compact(void)
{
    int32_t n = A.n, kept = 0, marked = 0, pending = 0, n_py = 0;
    int64_t flagged = 0;
    int32_t *to = rg_realloc(NULL, (size_t)(n ? n : 1) * sizeof *to);
    if (to) {
        /* the loops keep A's fields in locals: a node's uint8_t fields and
           the marks may alias anything, so A's would be read again after
           every store */
        rg_node *nodes = A.nodes;
        uint8_t *mark = A.mark;
        for (int32_t h = 0; h < A.nslots; h++)   /* weak handles are no roots */
            if (A.slot_node[h] >= 0 && !(A.slot_weak[h] & SLOT_WEAK))
                mark_one(mark, A.slot_node[h], &pending);
        /* parents before children; the marks stay, for the pass below */
        for (int32_t i = n - 1; pending > 0; i--) {
            if (!mark[i]) { i = skip_unmarked(mark, i) + 1; continue; }   /* i-- lands on it */
            const rg_node *z = &nodes[i];
            pending--;
            marked++;
            flagged += (z->flags & F_PY) != 0;
            mark_one(mark, z->a, &pending);
            mark_one(mark, z->b, &pending);
        }
        for (int32_t h = 0; h < A.nslots; h++) { /* a weak handle may outlive its node: */
            if (A.slot_node[h] >= 0 && (A.slot_weak[h] & SLOT_WEAK) && !mark[A.slot_node[h]])
                A.slot_node[h] = SLOT_DEAD;      /* dead until Python releases it */
        }
        int read_dead = A.n_flagged > flagged;
        /* with no Python op in the arena, no node has one under it: F_HASPY
           is cleared without reading the children */
        int any_py = A.n_py > 0;
        A.n_flagged = flagged;
        for (int32_t i = 0; i < n; i++) {        /* children moved first */
            if (!mark[i]) {
                if (read_dead) {
                    if (nodes[i].flags & F_PY) forget(node_id(&nodes[i]));
                    continue;
                }
                if (kept == marked) break;      /* none marked above */
                i = (int32_t)((const uint8_t *)memchr(mark + i, 1, (size_t)(n - i)) - mark);
            }
            mark[i] = 0;
            rg_node z = nodes[i];
            n_py += z.op == RG_PY;
            if (z.a >= 0) z.a = to[z.a];
            if (z.b >= 0) z.b = to[z.b];
            z.flags &= (uint8_t)~F_HASPY;
            if (any_py)
                z.flags |= (uint8_t)((z.op == RG_PY ? F_HASPY : 0) |
                                     (z.a >= 0 ? nodes[z.a].flags & F_HASPY : 0) |
                                     (z.b >= 0 ? nodes[z.b].flags & F_HASPY : 0));
            to[i] = kept;
            nodes[kept++] = z;
        }
        A.n_py = n_py;
        for (int32_t h = 0; h < A.nslots; h++)
            if (A.slot_node[h] >= 0) A.slot_node[h] = to[A.slot_node[h]];
        nodemap_rebuild();
        free(to);
        A.n = kept;
        A.collections++;
        A.haspy_stale = 0;
        free(A.tape);          /* its indices are stale now, and its program's */
        free(A.prog);
        free(A.terms);
        free(A.links);
        A.tape = NULL;
        A.prog = NULL;
        A.terms = NULL;
        A.links = NULL;
        A.tape_len = A.tape_cap = A.prog_cap = A.terms_cap = A.links_cap = 0;
        A.prog_len = -1;
        A.tape_root = -1;
    } else {
        kept = n;  /* no memory to compact with: let the arena grow instead */
    }
    A.live = kept;
    A.gc_at = kept > INT32_MAX / 2 ? INT32_MAX : 2 * kept;
    if (A.gc_at < GC_MIN_NODES) A.gc_at = GC_MIN_NODES;

    /* Give memory back after a large graph has gone. A mark array left larger
       than cap (its shrink failed) is harmless. */
    if (A.cap > 4 * (int64_t)A.gc_at) {
        int32_t cap = A.gc_at;
        rg_node *nodes = rg_realloc(A.nodes, (size_t)cap * sizeof *nodes);
        if (nodes) {
            A.nodes = nodes;
            A.cap = cap;
            uint8_t *mark = rg_realloc(A.mark, (size_t)cap);
            if (mark) A.mark = mark;
        }
    }
}

int rg_collect(const int32_t *dead, int32_t n, const int32_t *weak, int32_t m, int force)
{
    arena_lock(&A.lock);
    for (int32_t k = 0; k < n; k++) {
        int32_t h = dead[k];
        if (h < 0 || h >= A.nslots || A.slot_node[h] == SLOT_FREE ||
            A.slot_node[h] == SLOT_CLAIMED)
            continue;                   /* ignore what is not a handle in use */
        if (A.slot_node[h] >= 0) nodemap_del(A.slot_node[h], h);
        A.slot_node[h] = SLOT_FREE;
        A.in_use--;
    }
    int compacted = !A.pinned && force >= 0 && (force || A.n >= A.gc_at);
    if (compacted) {
        for (int32_t k = 0; k < m; k++)
            if (node_of(weak[k]) >= 0) A.slot_weak[weak[k]] |= SLOT_WEAK;
        compact();
        for (int32_t k = 0; k < m; k++)
            if (weak[k] >= 0 && weak[k] < A.nslots) A.slot_weak[weak[k]] &= (uint8_t)~SLOT_WEAK;
    }
    rg_mutex_unlock(&A.lock);
    return compacted;
}

void rg_postpone(void)
{
    arena_lock(&A.lock);
    if (A.gc_at <= A.n) A.gc_at = A.n > INT32_MAX / 2 ? INT32_MAX : 2 * A.n;
    rg_mutex_unlock(&A.lock);
}

int rg_trim_handles(int32_t n)
{
    int rc = RG_OK;
    arena_lock(&A.lock);
    for (int32_t h = n < 0 ? 0 : n; h < A.nslots; h++)
        if (A.slot_node[h] != SLOT_FREE) { rc = RG_EHANDLE; goto out; }
    if (n < 0 || n >= A.nslots) goto out;
    A.nslots = n;
    if (A.slot_cap > 4 * (int64_t)n && A.slot_cap > 1024) {
        int32_t cap = n < 1024 ? 1024 : n;
        int32_t *sn = rg_realloc(A.slot_node, (size_t)cap * sizeof *sn);
        if (!sn) goto out;
        A.slot_node = sn;
        A.slot_cap = cap;
        uint8_t *weak = rg_realloc(A.slot_weak, (size_t)cap);
        if (weak) A.slot_weak = weak;   /* else it stays larger: harmless */
        (void)nodemap_reserve(cap);     /* likewise */
    }
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_set_max_nodes(int64_t n)
{
    if (n < 1) return RG_EHANDLE;
    arena_lock(&A.lock);
    A.max_nodes = n > INT32_MAX ? INT32_MAX : (int32_t)n;
    rg_mutex_unlock(&A.lock);
    return RG_OK;
}

void rg_get_stats(rg_stats *out)
{
    arena_lock(&A.lock);
    out->nodes = A.n;
    out->capacity = A.cap;
    out->live = A.live;
    out->handles = A.in_use;
    out->slots = A.nslots;
    out->collections = A.collections;
    out->node_bytes = sizeof(rg_node);
    out->max_nodes = A.max_nodes;
    rg_mutex_unlock(&A.lock);
}
