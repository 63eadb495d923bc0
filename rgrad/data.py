"""Toy data sets, generated here so that the demo needs nothing else installed."""
import math
import random

__all__ = ["make_moons"]


def make_moons(n_samples: int = 100, noise: float = 0.1,
               seed: int | None = None) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles, as scikit-learn's make_moons draws them.

    Returns (X, y): X a list of [x0, x1] points, y a list of labels, 0 for the
    upper moon and 1 for the lower. Points are shuffled; `noise` is the standard
    deviation of Gaussian noise added to each coordinate; `seed` makes it
    repeatable (a private random.Random, so the global generator is untouched).
    """
    if n_samples < 2:
        raise ValueError("make_moons needs n_samples >= 2")
    if noise < 0:
        raise ValueError("noise must be >= 0")
    rng = random.Random(seed)
    n_upper = n_samples // 2
    n_lower = n_samples - n_upper
    points = []
    for i in range(n_upper):
        t = math.pi * i / (n_upper - 1) if n_upper > 1 else 0.0
        points.append(([math.cos(t), math.sin(t)], 0))
    for i in range(n_lower):
        t = math.pi * i / (n_lower - 1) if n_lower > 1 else 0.0
        points.append(([1.0 - math.cos(t), 0.5 - math.sin(t)], 1))
    rng.shuffle(points)
    X = [[x0 + rng.gauss(0.0, noise), x1 + rng.gauss(0.0, noise)]
         for (x0, x1), _ in points]
    y = [label for _, label in points]
    return X, y
