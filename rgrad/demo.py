"""micrograd's demo: an MLP 2-16-16-1 learns two moons with a max-margin loss,
L2 regularisation and SGD. `python -m rgrad demo` runs it.

Three ways to train:
- eager (micrograd's way): build the loss graph anew at every step;
- replay: build it once, then at every step recompute it in place with
  `total.forward()` and update the parameters with rgrad.optim.SGD (the same
  numbers as eager, to the bit);
- batch: build one sample's loss once and run it over all the samples with
  rgrad.Batch, the L2 term replayed beside it (the same numbers up to the
  order in which the samples' gradients are added: the last bits).
"""
import os
import random
import sys
import time

from .data import make_moons
from .engine import Value
from .nn import MLP

__all__ = ["loss", "train", "Progress", "text_boundary", "plot_boundary", "main"]


def _scores_and_loss(model, X, y, alpha):
    """(scores, total loss) as Values: the graph that one step differentiates."""
    inputs = [[Value(x0), Value(x1)] for x0, x1 in X]
    scores = [model(x) for x in inputs]
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    return scores, data_loss + reg_loss


def _accuracy(y, scores):
    hits = [(yi > 0) == (si.data > 0) for yi, si in zip(y, scores)]
    return sum(hits) / len(hits)


def loss(model, X, y, alpha=1e-4):
    """(total loss, accuracy) of the model on the whole data set, as in
    micrograd's demo: mean hinge loss plus alpha times the sum of squared
    parameters."""
    scores, total = _scores_and_loss(model, X, y, alpha)
    return total, _accuracy(y, scores)


def _learning_rate(k, steps):
    return 1.0 - 0.9 * k / steps


def _batched(model, X, y, alpha):
    """A step function for training with rgrad.Batch: step(lr) -> (loss,
    accuracy) before the update."""
    from .batch import Batch, _numpy
    from .bulk import values
    from .optim import SGD
    x, t = values([0.0, 0.0]), Value(0.0)
    score = model(x)
    loss1 = (1 + -t * score).relu()
    batch = Batch([loss1, score], inputs=[*x, t])
    params = model.parameters()
    reg = alpha * sum(p * p for p in params)
    rows = [[x0, x1, yi] for (x0, x1), yi in zip(X, y)]
    scale = 1.0 / len(rows)
    opt = SGD(params, lr=1.0)
    np = _numpy()
    if np is not None:                  # converted once, not at every forward
        rows = np.asarray(rows, dtype=float)

    def step(lr):
        out = batch.forward(rows)
        if np is not None:
            out = out.tolist()
        reg.forward()
        total = sum(r[0] for r in out) * scale + reg.data
        hits = [(yi > 0) == (r[1] > 0) for yi, r in zip(y, out)]
        opt.zero_grad()
        batch.backward(scale=scale)
        reg.backward()
        opt.lr = lr
        opt.step()
        return float(total), sum(hits) / len(hits)
    return step


def train(steps=100, seed=1337, samples=100, noise=0.1, log=print, *,
          replay=False, batch=False, on_step=None):
    """Train as micrograd's demo does; returns (model, [(loss, accuracy)]),
    the loss and accuracy of each step measured before its update.

    log, if given, gets one line of text per step; on_step, if given, is
    called as on_step(k, loss, accuracy) at each step k (from 0). With
    replay the graph is built once and recomputed in place at every step;
    with batch one sample's graph runs over all samples (see the module's
    docstring)."""
    random.seed(seed)
    X, labels = make_moons(samples, noise=noise, seed=seed)
    y = [2 * label - 1 for label in labels]
    model = MLP(2, [16, 16, 1])
    params = model.parameters()
    history = []
    if batch:
        batched = _batched(model, X, y, 1e-4)
    elif replay:
        from .optim import SGD
        scores, total = _scores_and_loss(model, X, y, 1e-4)
        opt = SGD(params, lr=_learning_rate(0, steps))
    for k in range(steps):
        lr = _learning_rate(k, steps)
        if batch:
            value, acc = batched(lr)
        elif replay:
            total.forward()
            acc = _accuracy(y, scores)
            opt.zero_grad()
            total.backward()
            opt.lr = lr
            opt.step()
        else:
            total, acc = loss(model, X, y)
            model.zero_grad()
            total.backward()
            for p in params:
                p.data -= lr * p.grad
        if not batch:
            value = total.data
        history.append((value, acc))
        if log:
            log(f"step {k:3d}  loss {value:.6f}  accuracy {acc * 100:.0f}%")
        if on_step is not None:
            on_step(k, value, acc)
    return model, history


class Progress:
    """A progress bar for training on `stream`: on a terminal, one line
    redrawn in place with '\\r' (at most every `interval` seconds, and at the
    last step); elsewhere (a file, a pipe), a plain line for the first step,
    every `every` steps and the last step."""

    def __init__(self, steps, stream=None, every=10, width=30, interval=0.05):
        self.steps = steps
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.every = every
        self.width = width
        self.interval = interval
        self._last = None
        self._drawn = 0

    def line(self, k, loss, acc):
        """The text shown for step k (from 0)."""
        done = k + 1
        digits = len(str(self.steps))
        text = f"step {done:{digits}d}/{self.steps}"
        if self.tty:
            filled = self.width * done // self.steps
            text += " [" + "#" * filled + "." * (self.width - filled) + "]"
        return f"{text}  loss {loss:.6f}  accuracy {acc * 100:5.1f}%"

    def update(self, k, loss, acc):
        done = k + 1
        last = done == self.steps
        if self.tty:
            now = time.perf_counter()
            if not last and self._last is not None and now - self._last < self.interval:
                return
            self._last = now
            text = self.line(k, loss, acc)
            # pad over whatever a longer previous line left behind
            self.stream.write("\r" + text.ljust(self._drawn))
            self._drawn = len(text)
            if last:
                self.stream.write("\n")
        elif done == 1 or done % self.every == 0 or last:
            self.stream.write(self.line(k, loss, acc) + "\n")
        self.stream.flush()


# ---- the decision boundary --------------------------------------------------

def _scores(model, points):
    """The model's score at each (x0, x1) of points: one graph, built once and
    run over all of them by rgrad.Batch."""
    from .batch import Batch
    x0, x1 = Value(0.0), Value(0.0)
    out = Batch([model([x0, x1])], inputs=[x0, x1]).forward([list(p) for p in points])
    return [float(r[0]) for r in out]


def _bounds(X, margin=0.25):
    xs, ys = [p[0] for p in X], [p[1] for p in X]
    return (min(xs) - margin, max(xs) + margin, min(ys) - margin, max(ys) + margin)


def text_boundary(model, X, labels, width=60, height=20):
    """The decision boundary as text, width x height characters: ':' where the
    model says label 1 (score > 0), ' ' where it says 0; each point drawn as
    'x' (label 1) or 'o' (label 0), upper case if the model gets it wrong."""
    if width < 2 or height < 2:
        raise ValueError("text_boundary needs width and height >= 2")
    x_lo, x_hi, y_lo, y_hi = _bounds(X)
    dx, dy = (x_hi - x_lo) / width, (y_hi - y_lo) / height
    cells = [(x_lo + (c + 0.5) * dx, y_hi - (r + 0.5) * dy)
             for r in range(height) for c in range(width)]
    scores = _scores(model, cells + [tuple(p) for p in X])
    grid = [[":" if scores[r * width + c] > 0 else " " for c in range(width)]
            for r in range(height)]
    for (a, b), label, s in zip(X, labels, scores[len(cells):]):
        c = min(width - 1, int((a - x_lo) / dx))
        r = min(height - 1, int((y_hi - b) / dy))
        mark = "x" if label == 1 else "o"
        if (s > 0) != (label == 1):
            mark = mark.upper()
        grid[r][c] = mark
    border = "+" + "-" * width + "+"
    rows = [border] + ["|" + "".join(row) + "|" for row in grid] + [border]
    rows.append("':' model says 1, ' ' model says 0; x label 1, o label 0 "
                "(X, O: misclassified)")
    return "\n".join(rows)


def plot_boundary(model, X, labels, path, resolution=150, title=None):
    """Save the decision boundary over the data as an image at `path` (PNG
    unless its suffix names another format matplotlib knows): the model's
    score on a grid, filled, its zero line, and the points. Needs matplotlib
    (ImportError otherwise)."""
    from matplotlib.figure import Figure   # no pyplot: no GUI backend needed

    x_lo, x_hi, y_lo, y_hi = _bounds(X)
    gx = [x_lo + (x_hi - x_lo) * i / (resolution - 1) for i in range(resolution)]
    gy = [y_lo + (y_hi - y_lo) * j / (resolution - 1) for j in range(resolution)]
    flat = _scores(model, [(a, b) for b in gy for a in gx])    # the grid in one forward
    z = [flat[j * resolution:(j + 1) * resolution] for j in range(resolution)]
    # a scale symmetric about 0, clipped so that far-off scores don't wash it out
    top = max(1e-9, min(3.0, max(abs(s) for row in z for s in row)))
    z = [[max(-top, min(top, s)) for s in row] for row in z]
    levels = [-top + 2 * top * i / 20 for i in range(21)]

    fig = Figure(figsize=(7, 5), dpi=100)
    ax = fig.subplots()
    filled = ax.contourf(gx, gy, z, levels=levels, cmap="RdBu", alpha=0.8)
    ax.contour(gx, gy, z, levels=[0.0], colors="k", linewidths=1.5)
    fig.colorbar(filled, ax=ax, label="model score")
    for label, colour, name in ((0, "tab:red", "label 0"), (1, "tab:blue", "label 1")):
        pts = [p for p, lab in zip(X, labels) if lab == label]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=colour,
                   edgecolors="k", s=30, label=name)
    ax.legend(loc="lower left")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_title(title or "decision boundary (black line: score 0)")
    fig.savefig(path, format=None if _has_suffix(path) else "png")


def _has_suffix(path):
    return bool(os.path.splitext(str(path))[1])


# ---- the command ------------------------------------------------------------

def main(steps=100, seed=1337, samples=100, replay=True, plot=None, stream=None,
         batch=False):
    """Train with a progress bar on `stream` (stdout), report, and with plot
    set draw the decision boundary there (or as text without matplotlib).
    Returns the exit code."""
    out = sys.stdout if stream is None else stream
    bar = Progress(steps, out)
    if batch:       # Batch's results are numpy arrays where it is installed:
        from .batch import _numpy   # its import, once per process, is not a step's
        _numpy()
    start = time.perf_counter()
    try:
        model, history = train(steps, seed, samples, log=None, replay=replay,
                               batch=batch, on_step=bar.update)
    except KeyboardInterrupt:
        out.write("\ninterrupted\n")
        return 130
    elapsed = time.perf_counter() - start
    final_loss, final_acc = history[-1]
    mode = "batch" if batch else "replay" if replay else "eager"
    out.write(f"done: loss {final_loss:.6f}, accuracy {final_acc * 100:.1f}%, "
              f"{elapsed / steps * 1e3:.2f} ms per step ({steps} steps, {mode})\n")
    if plot is None:
        return 0
    X, labels = make_moons(samples, noise=0.1, seed=seed)
    try:
        plot_boundary(model, X, labels, plot,
                      title=f"rgrad demo: {steps} steps, accuracy {final_acc * 100:.1f}%")
    except ImportError:     # no matplotlib: draw it here instead
        out.write(text_boundary(model, X, labels) + "\n")
        out.write(f"matplotlib is not installed, so {plot} was not written; "
                  "to get the PNG: pip install matplotlib\n")
        return 0
    except (OSError, ValueError) as e:
        sys.stderr.write(f"python -m rgrad demo: cannot write {plot}: {e}\n")
        return 1
    out.write(f"decision boundary saved to {plot}\n")
    return 0
