/* objects.c: what Python sees of the graph. Python keeps one Value object per
   node, so a node must lead back to the handle that object holds: a map from
   node index to handle, with an entry only for nodes bound to a handle (nodes
   that Python does not hold cost nothing). Also here: a node's children,
   giving a node new children (micrograd code assigns `_prev`), and reading
   the header of Python objects for collection (rgrad/collection.py). */
#include <stdlib.h>
#include <string.h>

#include "arena.h"

/* ---- from a node to its handle --------------------------------------------

   Open addressing with linear probing, deletion by shifting back (no
   tombstones). It has at least twice as many entries as the handle table has
   slots, so it is at most half full. Compaction moves nodes: it rebuilds the
   map. A node bound to several handles (only while Python is collecting: see
   rgrad/graph.py, _children) maps to the first; when that one goes, to
   another, found by a scan that runs only while such handles exist. */

#define M_EMPTY UINT64_MAX
#define M_MIN_BITS 11

static struct {
    uint64_t *e;   /* (uint64_t)node << 32 | handle, or M_EMPTY */
    int bits;      /* 2**bits entries */
    int64_t dups;  /* handles bound to a node that maps to another handle */
} M;

static inline uint32_t m_home(int32_t i)
{
    return ((uint32_t)i * 2654435769u) >> (32 - M.bits);   /* Fibonacci hashing */
}

static inline int32_t m_node(uint64_t e) { return (int32_t)(uint32_t)(e >> 32); }
static inline int32_t m_handle(uint64_t e) { return (int32_t)(uint32_t)e; }

void nodemap_put(int32_t i, int32_t h)
{
    uint32_t mask = (1u << M.bits) - 1;
    for (uint32_t k = m_home(i);; k = (k + 1) & mask) {
        uint64_t e = M.e[k];
        if (e == M_EMPTY) {
            M.e[k] = (uint64_t)(uint32_t)i << 32 | (uint32_t)h;
            return;
        }
        if (m_node(e) == i) {           /* it has a handle already */
            M.dups += m_handle(e) != h;
            return;
        }
    }
}

/* The slot of the map holding node i, or -1. */
static int64_t m_find(int32_t i)
{
    if (!M.e) return -1;
    uint32_t mask = (1u << M.bits) - 1;
    for (uint32_t k = m_home(i);; k = (k + 1) & mask) {
        uint64_t e = M.e[k];
        if (e == M_EMPTY) return -1;
        if (m_node(e) == i) return k;
    }
}

static int32_t nodemap_get(int32_t i)
{
    int64_t k = m_find(i);
    return k < 0 ? -1 : m_handle(M.e[k]);
}

/* Handle h, bound to node i, goes: node i maps to another of its handles,
   if it has one, or to none. */
void nodemap_del(int32_t i, int32_t h)
{
    int64_t found = m_find(i);
    if (found < 0) return;
    if (m_handle(M.e[found]) != h) {        /* h was not the one mapped */
        if (M.dups > 0) M.dups--;
        return;
    }
    uint32_t mask = (1u << M.bits) - 1, j = (uint32_t)found;
    for (uint32_t k = (j + 1) & mask; M.e[k] != M_EMPTY; k = (k + 1) & mask) {
        uint32_t home = m_home(m_node(M.e[k]));
        if (((k - home) & mask) >= ((k - j) & mask)) {   /* j lies on its probe path */
            M.e[j] = M.e[k];
            j = k;
        }
    }
    M.e[j] = M_EMPTY;
    if (M.dups > 0) {
        for (int32_t s = 0; s < A.nslots; s++)
            if (s != h && A.slot_node[s] == i) {
                nodemap_put(i, s);
                M.dups--;
                break;
            }
    }
}

void nodemap_rebuild(void)
{
    if (!M.e) return;
    M.dups = 0;
    memset(M.e, 0xff, sizeof *M.e << M.bits);
    for (int32_t h = 0; h < A.nslots; h++)
        if (A.slot_node[h] >= 0) nodemap_put(A.slot_node[h], h);
}

/* Sizes the map for a handle table of `slots` slots (growing or shrinking).
   RG_ENOMEM, with the map as it was, if it cannot. */
int nodemap_reserve(int64_t slots)
{
    int bits = M_MIN_BITS;
    while (((int64_t)1 << bits) < 2 * slots) bits++;
    if (M.e && bits == M.bits) return RG_OK;
    if (bits > 31) return RG_ENOMEM;
    uint64_t *e = rg_realloc(NULL, sizeof *e << bits);
    if (!e) return RG_ENOMEM;
    free(M.e);
    M.e = e;
    M.bits = bits;
    nodemap_rebuild();
    return RG_OK;
}

/* ---- children ----------------------------------------------------------- */

/* A node's children: a, then b, except that a Python op with more than two
   has in b a chain of RG_LINK nodes, each holding one child in a and the
   rest in b. Writes them (at most cap of them) and returns how many there
   are: one walk, however many. */
static int32_t list_children(int32_t i, int32_t *out, int32_t cap)
{
    const rg_node *z = &A.nodes[i];
    int32_t n = 0;
    if (z->a < 0) return 0;
    if (cap > n) out[n] = z->a;
    n++;
    int32_t j = z->b;
    if (z->op == RG_PY) {
        for (; j >= 0 && A.nodes[j].op == RG_LINK; j = A.nodes[j].b) {
            if (cap > n) out[n] = A.nodes[j].a;
            n++;
        }
    }
    if (j >= 0) {
        if (cap > n) out[n] = j;
        n++;
    }
    return n;
}

/* Child k of node i (k below its count). */
static int32_t child_at(int32_t i, int k)
{
    const rg_node *z = &A.nodes[i];
    if (k == 0) return z->a;
    int32_t j = z->b;
    for (int t = 1; t < k; t++) j = A.nodes[j].b;
    return A.nodes[j].op == RG_LINK ? A.nodes[j].a : j;
}

int rg_nchildren(int32_t h)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    int n = i >= 0 ? list_children(i, NULL, 0) : RG_EHANDLE;
    rg_mutex_unlock(&A.lock);
    return n;
}

int rg_child(int32_t h, int k, int32_t out)
{
    int rc;
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    if (i < 0 || k < 0 || k >= list_children(i, NULL, 0)) { rc = RG_EHANDLE; goto out; }
    if ((rc = claim_slots(&out, 1)) != RG_OK) goto out;
    bind_slot(out, child_at(i, k));
    A.slot_weak[out] |= SLOT_KEEP;
out:
    rg_mutex_unlock(&A.lock);
    return rc;
}

int rg_kept(int32_t h)
{
    arena_lock(&A.lock);
    int kept = node_of(h) >= 0 && (A.slot_weak[h] & SLOT_KEEP);
    rg_mutex_unlock(&A.lock);
    return kept;
}

int rg_is_child(int32_t h, int32_t parent)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h), p = node_of(parent);
    int found = 0;
    if (i >= 0 && p >= 0)
        for (int k = list_children(p, NULL, 0) - 1; k >= 0 && !found; k--)
            found = child_at(p, k) == i;
    rg_mutex_unlock(&A.lock);
    return found;
}

int32_t rg_children(int32_t h, int32_t *out, int32_t cap)
{
    arena_lock(&A.lock);
    int32_t i = node_of(h), n = RG_EHANDLE;
    if (i >= 0) {
        n = list_children(i, out, cap < 0 ? 0 : cap);
        for (int32_t k = 0; k < n && k < cap; k++) {
            out[k] = nodemap_get(out[k]);
            /* handed out by _prev: it lives as long as its node (as a handle
               rg_bind_children binds), even if it was an op's result nothing
               held, not yet collected: an id() taken now stays the node's */
            if (out[k] >= 0) A.slot_weak[out[k]] |= SLOT_KEEP;
        }
    }
    rg_mutex_unlock(&A.lock);
    return n;
}

int rg_bind_children(int32_t h, const int32_t *ks, const int32_t *hs, int32_t m, int32_t *got)
{
    int rc = RG_OK;
    int32_t *kids = NULL;
    arena_lock(&A.lock);
    int32_t i = node_of(h), n;
    if (i < 0 || m < 0) { rc = RG_EHANDLE; goto out; }
    n = list_children(i, NULL, 0);
    for (int32_t j = 0; j < m; j++)
        if (ks[j] < 0 || ks[j] >= n) { rc = RG_EHANDLE; goto out; }
    kids = rg_realloc(NULL, (size_t)(n ? n : 1) * sizeof *kids);
    if (!kids) { rc = RG_ENOMEM; goto out; }
    list_children(i, kids, n);
    if ((rc = claim_slots(hs, m)) != RG_OK) goto out;
    for (int32_t j = 0; j < m; j++) {
        int32_t have = nodemap_get(kids[ks[j]]);
        if (have >= 0) {                /* bound meanwhile, or listed twice */
            A.slot_node[hs[j]] = SLOT_FREE;
            got[j] = have;
        } else {
            bind_slot(hs[j], kids[ks[j]]);
            A.slot_weak[hs[j]] |= SLOT_KEEP;
            got[j] = hs[j];
        }
    }
out:
    rg_mutex_unlock(&A.lock);
    free(kids);
    return rc;
}

/* ---- constant operands ------------------------------------------------------

   micrograd makes a leaf Value for the constant of `a + c`, `a * c` and
   `-a` (that is `a * -1`); rgrad keeps the constant in the node, and shows
   Python a leaf for it (rgrad/graph.py), which gathers after each backward
   what micrograd's would: the node's grad (for + c), or the other operand's
   data times it (for * c). */

int rg_constant(int32_t h, double *value, double *grad)
{
    int rc = 1;
    arena_lock(&A.lock);
    int32_t i = node_of(h);
    const rg_node *z = i >= 0 ? &A.nodes[i] : NULL;
    if (!z) rc = RG_EHANDLE;
    else if (z->op == RG_ADDC) { *value = z->arg; *grad = z->grad; }
    else if (z->op == RG_MULC) { *value = z->arg; *grad = A.nodes[z->a].data * z->grad; }
    else if (z->op == RG_NEG) { *value = -1.0; *grad = A.nodes[z->a].data * z->grad; }
    else rc = 0;
    if (rc == 1) {      /* micrograd's ints: the constant; what its leaf gathers */
        int share = (z->flags & F_IGRAD) && (z->op == RG_ADDC || (A.nodes[z->a].flags & F_IDATA));
        rc |= (z->op == RG_NEG || (z->flags & F_IARG) ? 2 : 0) | (share ? 4 : 0);
    }
    rg_mutex_unlock(&A.lock);
    return rc;
}

/* Which of the n nodes of handles hs root's graph holds (out[k] = 1), for
   the leaves Python shows for constants. One walk down from root, as
   backward's; bit 1 of A.mark marks the walk, bit 2 the nodes asked about,
   bit 4 those it met. */
int rg_reached(int32_t root, const int32_t *hs, int32_t n, uint8_t *out)
{
    arena_lock(&A.lock);
    int32_t r = node_of(root);
    if (r < 0 || n < 0) {
        rg_mutex_unlock(&A.lock);
        return RG_EHANDLE;
    }
    uint8_t *mark = A.mark;
    for (int32_t k = 0; k < n; k++) {
        int32_t i = node_of(hs[k]);
        if (i >= 0) mark[i] |= 2;
    }
    int32_t pending = 1;
    mark[r] |= 1;
    for (int32_t i = r; pending > 0; i--) {
        if (!(mark[i] & 1)) {                            /* (one below has bit 1) */
            if (!mark[i]) i = skip_unmarked(mark, i) + 1;   /* the loop's i-- lands on it */
            continue;
        }
        mark[i] = (uint8_t)((mark[i] & ~1) | (mark[i] & 2 ? 4 : 0));
        pending--;
        const rg_node *z = &A.nodes[i];
        if (z->a >= 0 && !(mark[z->a] & 1)) { mark[z->a] |= 1; pending++; }
        if (z->b >= 0 && !(mark[z->b] & 1)) { mark[z->b] |= 1; pending++; }
    }
    for (int32_t k = 0; k < n; k++) {
        int32_t i = node_of(hs[k]);
        out[k] = i >= 0 && (mark[i] & 4);
    }
    for (int32_t k = 0; k < n; k++) {
        int32_t i = node_of(hs[k]);
        if (i >= 0) mark[i] = 0;
    }
    rg_mutex_unlock(&A.lock);
    return RG_OK;
}

/* ---- new children --------------------------------------------------------- */

/* Whether node i's children are, as a set, the n nodes idx (1 or 0), or
   RG_ENOMEM. Uses A.mark (all zero between calls) and leaves it so. */
static int same_children(int32_t i, const int32_t *idx, int32_t n)
{
    int32_t m = list_children(i, NULL, 0);
    int32_t *kids = rg_realloc(NULL, (size_t)(m ? m : 1) * sizeof *kids);
    if (!kids) return RG_ENOMEM;
    list_children(i, kids, m);
    int same = 1;
    for (int32_t k = 0; k < m; k++) A.mark[kids[k]] = 1;
    for (int32_t k = 0; k < n && same; k++) same = A.mark[idx[k]];
    for (int32_t k = 0; k < m; k++) A.mark[kids[k]] = 0;
    if (same) {              /* and every old child is among the new ones */
        for (int32_t k = 0; k < n; k++) A.mark[idx[k]] = 1;
        for (int32_t k = 0; k < m && same; k++) same = A.mark[kids[k]];
        for (int32_t k = 0; k < n; k++) A.mark[idx[k]] = 0;
    }
    free(kids);
    return same;
}

int rg_set_children(int32_t h, const int32_t *children, int32_t n)
{
    int rc = RG_OK;
    int32_t *idx = NULL;
    lock_to_make();
    int32_t i = node_of(h);
    if (i < 0 || n < 0) { rc = RG_EHANDLE; goto out; }
    idx = rg_realloc(NULL, (size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) { rc = RG_ENOMEM; goto out; }
    int32_t top = -1;
    for (int32_t k = 0; k < n; k++) {
        if ((idx[k] = node_of(children[k])) < 0) { rc = RG_EHANDLE; goto out; }
        if (idx[k] == i) { rc = RG_ECYCLE; goto out; }
        if (idx[k] > top) top = idx[k];
    }
    if ((rc = same_children(i, idx, n)) != 0) {         /* nothing changes */
        if (rc > 0) rc = RG_OK;
        goto out;
    }
    rg_node *z = &A.nodes[i];
    if (z->op != RG_LEAF && z->op != RG_PY) { rc = RG_EBUILTIN; goto out; }
    for (int32_t j = i + 1; j < A.n; j++)               /* a parent of i? */
        if (A.nodes[j].a == i || A.nodes[j].b == i) { rc = RG_EUSED; goto out; }
    /* No node depends on i, so none of the new children does: no cycle. */
    if (n == 0 && z->op == RG_LEAF) goto out;
    if (n <= 2 && top < i) {                            /* in place */
        z->a = n >= 1 ? idx[0] : -1;
        z->b = n >= 2 ? idx[1] : -1;
    } else {
        /* The children must sit below the node: it moves to the top, with its
           id (Python's key), data and grad. Its old place becomes a leaf that
           nothing reaches. */
        if ((rc = reserve_nodes(n > 2 ? n - 1 : 1)) != RG_OK) goto out;
        int32_t rest = n >= 2 ? idx[n - 1] : -1;
        for (int32_t k = n - 2; k >= 1; k--) {
            push_node(RG_LINK, idx[k], rest, 0.0);
            rest = A.n - 1;
        }
        z = &A.nodes[i];                                /* (the arena may have moved) */
        push_node(RG_PY, n >= 1 ? idx[0] : -1, rest, z->data);
        int32_t to = A.n - 1;
        rg_node *w = &A.nodes[to];
        w->grad = z->grad;
        w->id_lo = z->id_lo;
        w->id_hi = z->id_hi;
        w->flags = z->flags;
        A.n_py += 1 - (z->op == RG_PY);                 /* w is RG_PY, z no more */
        *z = (rg_node){ .op = RG_LEAF, .a = -1, .b = -1 };
        for (int32_t s = 0; s < A.nslots; s++)
            if (A.slot_node[s] == i) {
                nodemap_del(i, s);
                A.slot_node[s] = to;
                nodemap_put(to, s);
            }
        z = w;
    }
    if (z->op != RG_PY) A.n_py++;
    A.edits++;
    z->op = RG_PY;
    flag_py(z);                         /* (a node moved keeps its flags) */
    z->flags |= F_HASPY;
    A.tape_root = -1;                                   /* a cached tape may hold it */
out:
    rg_mutex_unlock(&A.lock);
    free(idx);
    return rc;
}

/* ---- Python objects, for collection --------------------------------------

   CPython lays out every object as its reference count, then its type. In
   CPython 3.11 an instance of a class with a __dict__ keeps a pointer to its
   dict three words before the object (a dict is its reference count, type,
   then its number of items) and, until that dict is made, inline values four
   words before it, whose count of attributes is the byte two before the
   values (RG_LAYOUT_311). rg_sweep reads the objects from Python's registry,
   a list (its reference count, type, size, then its array of items).
   rgrad/collection.py checks with rg_probe and rg_list_item that the running
   Python is laid out so before it uses rg_sweep, and otherwise does the same
   in Python. It calls rg_sweep holding its collection lock, and the registry
   changes size only under that lock: its array of items stays put, and the
   objects it holds stay alive, while C reads them (None, in a free slot, is
   never held by the registry alone). An object that only the registry holds
   cannot gain a reference meanwhile: Values take no weak references, and
   `_prev` reads the registry under the same lock. */

static int has_attributes(const intptr_t *o, int layout)
{
    if (layout == RG_LAYOUT_311) {
        const intptr_t *dict = (const intptr_t *)o[-3];
        if (dict) return dict[2] != 0;
        const uint8_t *values = (const uint8_t *)o[-4];
        return values && values[-2] != 0;
    }
    return 1;
}

void rg_probe(intptr_t obj, int layout, intptr_t *out)
{
    const intptr_t *o = (const intptr_t *)obj;
    out[0] = o[0];
    out[1] = o[1];
    out[2] = has_attributes(o, layout);
}

static const intptr_t *list_item(intptr_t list, int64_t k)
{
    const intptr_t *l = (const intptr_t *)list;
    if (k < 0 || k >= l[2]) return NULL;
    return ((const intptr_t *const *)l[3])[k];
}

intptr_t rg_list_item(intptr_t list, int64_t k)
{
    return (intptr_t)list_item(list, k);
}

int32_t rg_sweep(intptr_t registry, const int32_t *slots, int32_t n, intptr_t plain,
                 int layout, int32_t *out, int32_t *kept)
{
    int32_t dead = 0, nk = 0;
    arena_lock(&A.lock);
    for (int32_t k = 0; k < n; k++) {
        int32_t s = slots ? slots[k] : k;
        const intptr_t *o = list_item(registry, s);
        if (!o || o[0] != 1) continue;                  /* held by more than the registry */
        int32_t at = s < A.nslots ? A.slot_node[s] : SLOT_FREE;
        if (at == SLOT_CLAIMED) continue;
        if (at < 0 || (o[1] == plain && !(A.slot_weak[s] & SLOT_KEEP) &&
                       !has_attributes(o, layout)))
            out[dead++] = s;
        else
            out[n - 1 - nk++] = s;
    }
    rg_mutex_unlock(&A.lock);
    *kept = nk;
    return dead;
}

/* ---- Python objects, for fused layers ---------------------------------------

   rgrad/nn.py's fused layers check on each call that every neuron is still
   as the layer's plan was made from: its class, its weights list and the
   weights in it, its bias and nonlinearity; a fused MLP also that each of
   its layers is still the Layer it was, with the same list of neurons.
   Python does it by reading the attributes; where the layout holds
   (RG_LAYOUT_311, checked by rgrad/nn.py at import) C does it from the
   objects, in one call (rg_objects_hold):

   - the classes: each one's type version tag (CPython 3.11 sets a new one,
     or 0, whenever the class or a base changes: a property named w, a
     __getattribute__, a new __call__ or __mul__);
   - the objects (neurons, layers): each is still an instance of its class,
     and its dict (made at the plan, for good) is the same object with the
     same version tag (CPython 3.11 gives a dict a new one whenever an item is
     set or deleted): so its w, b and nonlin, or its neurons, are the same
     objects;
   - the lists (a layer's neurons, a neuron's w, an MLP's layers): each is an
     exact list holding, in order, the objects it held when the check was
     made (rgrad/nn.py matched each dict, at its version, to the plan then),
     each still an instance of its class (a Value's class can be assigned:
     a weight or, through a list of their own, a bias made a subclass that
     defines its own operators).

   The check holds every object, dict and list it names, so no address can
   be reused by another object while it does. Called with the GIL held (see
   gil.h), so nothing changes or is freed meanwhile. */

#define RG_DICT_VERSION_311 3       /* words: reference count, type, used, version */
#define RG_TYPE_FLAGS_311 168       /* bytes into a 64-bit PyTypeObject: tp_flags */
#define RG_TYPE_TAG_311 384         /* and tp_version_tag */
#define RG_VALID_VERSION_TAG (1u << 19)   /* Py_TPFLAGS_VALID_VERSION_TAG */

intptr_t rg_object_dict(intptr_t obj)
{
    return ((const intptr_t *)obj)[-3];
}

uint64_t rg_dict_version(intptr_t dict)
{
    return ((const uint64_t *)dict)[RG_DICT_VERSION_311];
}

/* A class's version tag, or 0 if CPython does not vouch for it (a tag it
   set, then ran out of tags for a base, is left without the flag: changes
   to the class would not change it). tp_flags' low word holds the flag
   whether the field is 4 or 8 bytes (little-endian; elsewhere the import's
   probe finds no tag and C checks nothing). */
uint32_t rg_type_tag(intptr_t type)
{
    uint32_t tag, flags;
    memcpy(&flags, (const char *)type + RG_TYPE_FLAGS_311, sizeof flags);
    memcpy(&tag, (const char *)type + RG_TYPE_TAG_311, sizeof tag);
    return flags & RG_VALID_VERSION_TAG ? tag : 0;
}

int rg_objects_hold(const intptr_t *types, const uint32_t *tags, int32_t ntypes,
                    const intptr_t *objs, const intptr_t *otypes, const intptr_t *dicts,
                    const uint64_t *versions, int32_t nobjs,
                    const intptr_t *lists, const int32_t *lens, const intptr_t *items,
                    const intptr_t *item_types, int32_t nlists, intptr_t list_type)
{
    for (int32_t t = 0; t < ntypes; t++)
        if (tags[t] == 0 || rg_type_tag(types[t]) != tags[t]) return 0;
    for (int32_t o = 0; o < nobjs; o++) {
        const intptr_t *obj = (const intptr_t *)objs[o];
        if (obj[1] != otypes[o] || obj[-3] != dicts[o] ||
            rg_dict_version(dicts[o]) != versions[o])
            return 0;
    }
    int64_t k = 0;
    for (int32_t l = 0; l < nlists; l++) {
        const intptr_t *list = (const intptr_t *)lists[l];
        if (list[1] != list_type || list[2] != lens[l]) return 0;
        const intptr_t *held = (const intptr_t *)list[3];
        for (int32_t q = 0; q < lens[l]; q++, k++)
            if (held[q] != items[k] || ((const intptr_t *)items[k])[1] != item_types[l])
                return 0;
    }
    return 1;
}
