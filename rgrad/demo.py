"""micrograd's demo: an MLP 2-16-16-1 learns two moons with a max-margin loss,
L2 regularisation and SGD. `python -m rgrad demo` runs it."""
import random
import time

from .data import make_moons
from .engine import Value
from .nn import MLP


def loss(model, X, y, alpha=1e-4):
    """(total loss, accuracy) of the model on the whole data set, as in
    micrograd's demo: mean hinge loss plus alpha times the sum of squared
    parameters."""
    inputs = [[Value(x0), Value(x1)] for x0, x1 in X]
    scores = [model(x) for x in inputs]
    losses = [(1 + -yi * si).relu() for yi, si in zip(y, scores)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * sum(p * p for p in model.parameters())
    accuracy = [(yi > 0) == (si.data > 0) for yi, si in zip(y, scores)]
    return data_loss + reg_loss, sum(accuracy) / len(accuracy)


def train(steps=100, seed=1337, samples=100, noise=0.1, log=print):
    """Train as micrograd's demo does; returns (model, [(loss, accuracy)])."""
    random.seed(seed)
    X, labels = make_moons(samples, noise=noise, seed=seed)
    y = [2 * label - 1 for label in labels]
    model = MLP(2, [16, 16, 1])
    history = []
    for k in range(steps):
        total, acc = loss(model, X, y)
        model.zero_grad()
        total.backward()
        lr = 1.0 - 0.9 * k / steps
        for p in model.parameters():
            p.data -= lr * p.grad
        history.append((total.data, acc))
        if log:
            log(f"step {k:3d}  loss {total.data:.6f}  accuracy {acc * 100:.0f}%")
    return model, history


def main(steps=100, seed=1337, samples=100):
    start = time.perf_counter()
    _, history = train(steps, seed, samples)
    elapsed = time.perf_counter() - start
    final_loss, final_acc = history[-1]
    print(f"done: loss {final_loss:.6f}, accuracy {final_acc * 100:.0f}%, "
          f"{elapsed / steps * 1e3:.2f} ms per step")
    return 0
