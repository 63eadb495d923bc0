/* rgrad's C API, as cffi sees it. build_ffi.py reads this file verbatim into
   ffibuilder.cdef(), so it holds declarations only: no preprocessor lines.

   Python never sees a node index: a Value holds a handle (a slot in the handle
   table), and the slot names a node. Nodes move when the arena is compacted;
   slots do not. Python chooses the slot of every new handle (it keeps the free
   list, rgrad/engine.py): functions that make nodes take the slot(s) to bind
   as their first argument (or an array), and C checks that each is free.
   They return RG_OK or a negative result code; on failure nothing is bound. */

/* Result codes, each the Python exception it becomes (rgrad/engine.py). */
enum {
    RG_OK = 0,
    RG_EZERODIV = -1,   /* ZeroDivisionError: division by zero, 0.0 ** negative */
    RG_EDOMAIN = -2,    /* ValueError: math domain error, (-8.0) ** 0.5 */
    RG_EOVERFLOW = -3,  /* OverflowError: a finite pow whose result is out of range */
    RG_ENOMEM = -4,     /* MemoryError: the arena or the handle table could not grow */
    RG_EHANDLE = -5,    /* ValueError: not a live handle (a tampered Value._s) */
    RG_COLLECT = -6,    /* not an error: hand over dead handles (rg_collect), then retry */
    RG_EPYOP = -7,      /* a forward that C cannot compute: an op defined in Python */
    RG_PYGRAPH = -8,    /* not an error: the graph has Python ops; walk it with rg_run */
    RG_EBUDGET = -9,    /* MemoryError: the node budget (rg_set_max_nodes) is spent */
    RG_EANOMALY = -10,  /* FloatingPointError: NaN or infinity in anomaly mode */
    RG_EUSED = -11,     /* ValueError: new children for a node other nodes use */
    RG_EBUILTIN = -12,  /* ValueError: new children for a node a built-in op made */
    RG_ECYCLE = -13,    /* ValueError: a node as its own child */
    RG_EBATCHIN = -14,  /* ValueError: a Batch's inputs must be distinct leaves */
    RG_ENOFORWARD = -15 /* RuntimeError: a Batch's backward before its forward */
};

/* Op codes, as stored in a node. */
enum {
    RG_LEAF, RG_ADD, RG_MUL, RG_ADDC, RG_MULC,
    RG_NEG, RG_POW, RG_RELU,
    RG_TANH, RG_EXP, RG_LOG, RG_SIGMOID, RG_POWV, RG_RPOWC, RG_SOFTPLUS,
    RG_PY,      /* an op defined in Python: data given, backward a Python closure */
    RG_LINK,    /* internal: carries a Python op's third and later children */
    RG_STEP,    /* z = [x > 0], relu's derivative in a gradient graph (rg_grad_graph) */
    RG_POWU,    /* z = x ** c, and */
    RG_POWVU,   /* z = x ** y, unchecked (inf or NaN where ** raises): in gradient graphs */
    RG_LNZ      /* z = ln x, 0 at x = 0 (** 's slope in its exponent, z ln x, is 0 there) */
};

typedef struct {
    int64_t nodes;        /* nodes in the arena, live or not yet collected */
    int64_t capacity;     /* nodes the arena has room for */
    int64_t live;         /* nodes found reachable at the last collection */
    int64_t handles;      /* handles in use (bound to a node, or to a freed one) */
    int64_t slots;        /* size of the handle table */
    int64_t collections;  /* compactions run so far */
    int64_t node_bytes;   /* sizeof one node */
    int64_t max_nodes;    /* the node budget */
} rg_stats;

/* What anomaly mode found: the op, its inputs' and output's data, and the bad
   number (the output in forward, a gradient it passed on in backward). */
typedef struct {
    int op;
    int backward;
    int nin;
    double inp[2];
    double arg;
    double out;
    double grad;
    double value;
} rg_anomaly_info;

/* Making nodes: each binds handle h to the new node. */
int rg_leaf(int32_t h, double x, int isint);   /* isint: micrograd's data is an int */
int rg_add(int32_t h, int32_t a, int32_t b);    /* a + b */
int rg_sub(int32_t h, int32_t a, int32_t b);    /* a + (-b), two nodes as in micrograd */
int rg_mul(int32_t h, int32_t a, int32_t b);    /* a * b */
int rg_div(int32_t h, int32_t a, int32_t b);    /* a * b**-1, two nodes */
int rg_addc(int32_t h, int32_t a, double c);    /* a + c */
int rg_subc(int32_t h, int32_t a, double c);    /* a - c */
int rg_mulc(int32_t h, int32_t a, double c);    /* a * c */
int rg_divc(int32_t h, int32_t a, double c);    /* a * c**-1 */
int rg_rsubc(int32_t h, int32_t a, double c);   /* (-a) + c, two nodes */
int rg_rdivc(int32_t h, int32_t a, double c);   /* a**-1 * c, two nodes */
int rg_neg(int32_t h, int32_t a);               /* -a */
int rg_pow(int32_t h, int32_t a, double k);     /* a ** k */
int rg_relu(int32_t h, int32_t a);              /* max(a, 0) */
int rg_tanh(int32_t h, int32_t a);
int rg_exp(int32_t h, int32_t a);
int rg_log(int32_t h, int32_t a);               /* natural log */
int rg_sigmoid(int32_t h, int32_t a);           /* 1 / (1 + exp(-a)) */
int rg_softplus(int32_t h, int32_t a);          /* log(1 + exp(a)) */
int rg_powv(int32_t h, int32_t a, int32_t b);   /* a ** b, b a Value */
int rg_rpowc(int32_t h, int32_t a, double c);   /* c ** a */
/* The same, with a constant that is an int in micrograd (Python gave an int):
   micrograd's results are ints where Python's arithmetic on ints gives one. */
int rg_addci(int32_t h, int32_t a, double c);
int rg_mulci(int32_t h, int32_t a, double c);
int rg_powi(int32_t h, int32_t a, double k);
int rg_rpowci(int32_t h, int32_t a, double c);
int rg_rsubci(int32_t h, int32_t a, double c);
int rg_rdivci(int32_t h, int32_t a, double c);

/* Many leaves at once: handle hs[i] names a leaf holding xs[i].
   All or nothing: RG_OK, or a result code with no leaf made. */
int rg_leaves(const double *xs, int32_t n, const int32_t *hs);

/* A layer of neurons in one call, as micrograd's Neuron adds its terms:
   out[j] = act(b[j] + w[j*nin+0]*x[0] + w[j*nin+1]*x[1] + ...), act relu if
   relu is set, one node per multiply and per add; handle out[j] names it.
   An input given as a number (x[i] = -1) is the constant xc[i] in each
   multiply, as micrograd makes a leaf for it in each (an int there where
   xint, if not NULL, has xint[i] set). All or nothing. */
int rg_layer(const int32_t *w, const int32_t *b, const int32_t *x, const double *xc,
             const uint8_t *xint, int32_t nin, int32_t nout, int relu, const int32_t *out);

/* Layers in one call: what calling a Layer of each size in turn makes
   (sizes[0] inputs, sizes[l + 1] outputs of layer l, relu[l] its
   nonlinearity; w and b all layers' weights and biases, layer after layer;
   x, xc, xint as for rg_layer). Only the last layer's outputs get handles. */
int rg_mlp(const int32_t *w, const int32_t *b, const int32_t *sizes, int32_t nlayers,
           const uint8_t *relu, const int32_t *x, const double *xc, const uint8_t *xint,
           const int32_t *out);

/* Gradients: sets root's grad to 1 and adds into every node root depends on. */
int rg_backward(int32_t root);

/* Replay: recomputes, in creation order, the data of every node root depends
   on from the current data of its leaves, and zeroes their grads (leaves keep
   theirs). Stops at the first op that fails, with its result code. */
int rg_forward(int32_t root);

/* The number of instructions in replay's program for the last tape it ran
   (csrc/tape.c: each chain of multiply-adds is one), or -1 if none was made
   for it (for the tests). */
int32_t rg_replay_program(void);

/* Reading and writing a node. rg_data and rg_grad return NaN for a dead handle
   (check with rg_valid). */
int rg_valid(int32_t h);
double rg_data(int32_t h);
double rg_grad(int32_t h);
int rg_set_data(int32_t h, double x, int isint);
int rg_set_grad(int32_t h, double x, int isint);
/* Whether h's data (which is RG_DATA) or grad reads back as an int: micrograd's
   would be an int (isint of what Python set, and what the ops make of it: see
   arena.h) and it is a whole number below 2**53. 0 for a dead handle. */
int rg_isint(int32_t h, int which);

/* The same for n handles at once: which is RG_DATA or RG_GRAD. All-or-nothing
   for the setter: RG_EHANDLE if any handle is dead, and nothing written. The
   setter writes floats; xs NULL writes micrograd's int 0 (zero_grad). */
enum { RG_DATA, RG_GRAD };
int rg_get_many(const int32_t *hs, int32_t n, int which, double *out);
int rg_set_many(const int32_t *hs, int32_t n, int which, const double *xs);

/* Optimizers over n parameters, as PyTorch defines them (weight decay adds
   weight_decay * p to the gradient). SGD: velocity is NULL without momentum,
   else n buffers (first step: buffer = gradient). Adam: step counts from 1; m
   and v are n buffers each, zero before the first step. */
int rg_sgd_step(const int32_t *params, int32_t n, double lr, double momentum,
                double weight_decay, double *velocity, int first);
int rg_adam_step(const int32_t *params, int32_t n, double lr, double beta1,
                 double beta2, double eps, double weight_decay, int64_t step,
                 double *m, double *v);

/* The graph, for tools: op code, constant operand, children. */
int rg_op(int32_t h);
double rg_arg(int32_t h);
int rg_nchildren(int32_t h);
int rg_child(int32_t h, int i, int32_t out);  /* binds handle out to child i */
int64_t rg_id(int32_t h);                /* stable per node: a hash */
int rg_same(int32_t h1, int32_t h2);     /* 1 if both name one node */
int rg_is_child(int32_t h, int32_t parent);  /* 1 if h's node is a child of parent's */
/* One Python object per node (rgrad/engine.py, _children). rg_children writes,
   for each of h's children (at most cap), the handle bound to it, or -1 if
   none is, and returns how many children h has. rg_bind_children binds each
   free handle hs[j] to h's child number ks[j], unless that child has a handle
   already (bound since, or the same child listed twice): got[j] is the handle
   the child has after the call, hs[j] or that one (then hs[j] stays free).
   RG_EHANDLE, and nothing bound, if a handle is not free or a ks[j] is out of
   range. A handle bound by either is kept (rg_kept): its Value lives as
   long as the node, as the objects micrograd's graph holds do. */
int32_t rg_children(int32_t h, int32_t *out, int32_t cap);
int rg_kept(int32_t h);
int rg_bind_children(int32_t h, const int32_t *ks, const int32_t *hs, int32_t m, int32_t *got);
/* The constant operand of h's node, for the leaf Python shows for it:
   returns 1, the constant and what a backward pass that reached the node
   added to micrograd's leaf for it, for `a + c`, `a * c` and `-a` (a * -1),
   plus 2 if the constant is an int in micrograd and 4 if what it added is;
   0 for other nodes. rg_reached sets out[k] to 1 if root's graph holds the
   node of hs[k], else 0. */
int rg_constant(int32_t h, double *value, double *grad);
int rg_reached(int32_t root, const int32_t *hs, int32_t n, uint8_t *out);
/* micrograd code assigning `_prev`: h's node gets these n children and becomes
   an op defined in Python. Nothing changes if they are its children already
   (as a set). RG_EUSED if another node has h's node as a child, RG_EBUILTIN if
   a built-in op made it, RG_ECYCLE for h's own node among them. */
int rg_set_children(int32_t h, const int32_t *children, int32_t n);
/* Collection's view of Python objects (rgrad/collection.py), on CPython
   3.11 (RG_LAYOUT_311: where an object keeps its attributes; see
   csrc/objects.c). rg_probe reads an object's reference count, type and
   whether it has attributes, and rg_list_item the address of item k of a
   list (0 past its end), so that Python can check that the layout holds.
   rg_sweep looks at the objects the list `registry` holds at slots[0..n) (at
   0..n if slots is NULL): one that only the registry holds (reference count
   1) is dead if its slot names no node or if it is a `plain` instance without
   attributes whose handle is not kept, and kept otherwise (an instance of a
   subclass, one with attributes, or one _prev handed out: it lives as long
   as its node). Dead slots go to
   out[0..returned), kept ones to out[n - *kept..n). */
enum { RG_LAYOUT_311 = 2 };
void rg_probe(intptr_t obj, int layout, intptr_t *out);
intptr_t rg_list_item(intptr_t list, int64_t k);
int32_t rg_sweep(intptr_t registry, const int32_t *slots, int32_t n, intptr_t plain,
                 int layout, int32_t *out, int32_t *kept);

/* Fused layers' check of their neurons (rgrad/nn.py), on CPython 3.11: see
   csrc/objects.c. rg_object_dict reads the dict pointer of an instance of a
   class with a managed dict, rg_dict_version a dict's version tag,
   rg_type_tag a class's; rgrad/nn.py checks what they read before it uses
   them. rg_objects_hold: 1 if each class types[t] still has the tag
   tags[t] (not 0), each object objs[o] is still an instance of otypes[o]
   whose dict is dicts[o] at versions[o], and each list lists[l] is an exact
   list (list_type) of lens[l] items, the next lens[l] of items in order,
   each an instance of item_types[l]; else 0. */
intptr_t rg_object_dict(intptr_t obj);
uint64_t rg_dict_version(intptr_t dict);
uint32_t rg_type_tag(intptr_t type);
int rg_objects_hold(const intptr_t *types, const uint32_t *tags, int32_t ntypes,
                    const intptr_t *objs, const intptr_t *otypes, const intptr_t *dicts,
                    const uint64_t *versions, int32_t nobjs,
                    const intptr_t *lists, const int32_t *lens, const intptr_t *items,
                    const intptr_t *item_types, int32_t nlists, intptr_t list_type);

/* The GIL (csrc/gil.h, in the Python module only). rg_wait_without_gil:
   called once at import, so that a call that keeps the GIL waits for a busy
   arena without it. rg_gil_releases: how many calls have released it so far
   (for the tests). */
void rg_wait_without_gil(void);
int64_t rg_gil_releases(void);

/* Ops defined in Python (Value(data, _children, _op) and _backward closures).
   rg_custom makes an RG_PY node with the given data and children;
   rg_make_custom turns an existing node into one; rg_flag marks a node that
   Python keeps something for (label, closure) so that its id is reported by
   rg_peek_dead once the node is freed. rg_peek_dead copies up to cap such ids
   without removing them; rg_drop_dead(k) removes the k it copied, so an
   interruption between the two loses nothing. */
int rg_custom(int32_t h, double data, int isint, const int32_t *children, int32_t n);
int rg_make_custom(int32_t h);
int rg_flag(int32_t h);
int32_t rg_peek_dead(uint64_t *out, int32_t cap);
void rg_drop_dead(int32_t k);

/* Walking a graph that holds Python ops, with Python's help. rg_pin(+1)
   stops compaction (node indices stay put) until rg_pin(-1). rg_tape writes
   the indices of the non-leaf nodes root depends on, in creation order, and
   returns their number (writes nothing if cap is too small). rg_run runs
   tape[*pos], then onwards (upwards for forward, downwards for backward),
   until done (RG_OK), an error, or an RG_PY node (RG_PYGRAPH, its id in *id);
   *pos is left where it stopped. rg_node_backward runs one node's backward
   (RG_PYGRAPH for an RG_PY node). */
int rg_pin(int delta);
int32_t rg_tape(int32_t root, int32_t *out, int32_t cap);
int rg_run(const int32_t *tape, int32_t n, int32_t *pos, int backward, uint64_t *id);
int rg_node_backward(int32_t h);

/* Memory: frees the n dead handles (ignoring any that is free), then compacts
   the arena if it is due (or if force is set; never if force < 0). The m weak handles are not
   roots in that compaction: one whose node is freed stays in use, naming no
   node, until it is released. Returns 1 if it compacted, else 0.
   rg_postpone: a collection is due but cannot run now (one is under way on
   this thread): let the arena grow instead. rg_trim_handles(n): shrink the
   handle table to n slots; RG_EHANDLE (and nothing done) if one at n or above
   is in use. */
int rg_collect(const int32_t *dead, int32_t n, const int32_t *weak, int32_t m, int force);
void rg_postpone(void);
int rg_trim_handles(int32_t n);
void rg_get_stats(rg_stats *out);

/* The node budget: making a node past it fails with RG_EBUDGET (after a
   collection, if one could help). n >= 1. */
int rg_set_max_nodes(int64_t n);

/* Anomaly mode, per thread. rg_anomaly_enter turns it on for the calling
   thread and returns a token (> 0) naming that thread, or RG_ENOMEM;
   rg_anomaly_exit(token) undoes one enter, from any thread: the mode of the
   thread the token names is on while it has more enters than exits. */
int64_t rg_anomaly_enter(void);
int rg_anomaly_exit(int64_t token);
void rg_anomaly_info_get(rg_anomaly_info *out);

/* Testing only (tests/test_faults.py): makes the allocation n allocations from
   now fail (n = 0: the next one), as if the system had no memory left; n < 0
   lets every allocation through. Returns the number of allocations made
   since the previous call. */
int64_t rg_fault_after(int64_t n);

/* Batched replay (batch.c, rgrad.Batch): the graph under outputs outs, with
   the leaves ins as per-row inputs, compiled once and run over many rows.
   rg_batch_forward: rows is n x nin, out n x nout (row-major). It reads the
   shared leaves' data now. rg_batch_backward adds scale * (the sum over rows
   of d out[:, 0] / d leaf) into the grad of every other leaf; the per-row
   d out[:, 0] / d input are then read with rg_batch_input_grads (n x nin).
   threads: how many threads may run blocks of rows (1: the caller's only).
   rg_batch_shape: 0 vector registers, 1 uniform, 2 shared leaves, 3 rows a
   block, 4 instructions. RG_EPYOP if the graph holds an op defined in Python. */
typedef struct rg_batch rg_batch;
int rg_batch_new(const int32_t *outs, int32_t nout, const int32_t *ins, int32_t nin,
                 rg_batch **made);
void rg_batch_free(rg_batch *b);
/* For tests: fuse 0 compiles batches without fused multiply-add chains; a
   block > 0 fixes the rows a block (rounded up to 8), else sized for L2. */
void rg_batch_tune(int fuse, int32_t block);
int32_t rg_batch_shape(rg_batch *b, int32_t which);
int rg_batch_forward(rg_batch *b, const double *rows, int64_t n, double *out, int threads);
int rg_batch_backward(rg_batch *b, double scale, int threads);
int rg_batch_input_grads(rg_batch *b, double *out, int64_t rows);   /* rows: the caller's count */

/* Derivatives that leave every grad as it was (rgrad.grad, csrc/higher.c):
   d(sum over j of seeds[j] * outs[j]) / d ins[k]. rg_grad_values writes the
   numbers to result (seeds NULL: all 1). rg_grad_graph builds them as nodes
   of rgrad ops, which can be differentiated again, and binds handle out_h[k]
   to the k-th (seeds[j] a handle, or -1 for 1). RG_EPYOP if the graph holds
   an op defined in Python. */
int rg_grad_values(const int32_t *outs, int32_t nout, const double *seeds,
                   const int32_t *ins, int32_t nin, double *result);
int rg_grad_graph(const int32_t *outs, int32_t nout, const int32_t *seeds,
                  const int32_t *ins, int32_t nin, const int32_t *out_h);
