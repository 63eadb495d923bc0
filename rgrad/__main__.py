"""Command line: `python -m rgrad demo` trains micrograd's demo model."""
import argparse
import os
import sys


def _int_at_least(low):
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {n}")
        return n
    parse.__name__ = f"integer >= {low}"
    return parse


def _integer(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")


def parser():
    p = argparse.ArgumentParser(
        prog="python -m rgrad",
        description="rgrad: micrograd's autograd engine, with its graph in C.")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="train micrograd's demo MLP on two moons",
        description="Train micrograd's demo model (MLP 2-16-16-1, max-margin "
                    "loss, L2 1e-4, SGD with lr = 1 - 0.9*k/steps) on two moons.")
    demo.add_argument("--steps", type=_int_at_least(1), default=100, metavar="N",
                      help="training steps (default: 100)")
    demo.add_argument("--seed", type=_integer, default=1337, metavar="N",
                      help="seed for the data and the weights (default: 1337)")
    demo.add_argument("--samples", type=_int_at_least(2), default=100, metavar="N",
                      help="points in the data set (default: 100)")
    mode = demo.add_mutually_exclusive_group()
    mode.add_argument("--replay", dest="replay", action="store_true", default=True,
                      help="build the loss graph once, recompute it in place "
                           "each step (default)")
    mode.add_argument("--eager", dest="replay", action="store_false",
                      help="rebuild the loss graph each step, as micrograd does")
    demo.add_argument("--plot", metavar="FILE.png",
                      help="save the decision boundary to FILE.png (needs "
                           "matplotlib; without it, print it as text)")
    demo.set_defaults(parser=demo)
    return p


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.plot is not None:
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            args.parser.error(f"argument --plot: no such directory: {folder}")
    from . import demo
    return demo.main(args.steps, args.seed, args.samples, replay=args.replay,
                     plot=args.plot)


if __name__ == "__main__":
    sys.exit(main())
