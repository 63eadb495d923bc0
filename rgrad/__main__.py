"""Command line: `python -m rgrad demo` trains micrograd's demo model;
`python -m rgrad bench` times rgrad against micrograd and its peers."""
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
    mode.add_argument("--batch", dest="mode", action="store_const", const="batch",
                      default="batch",
                      help="build one sample's loss once and run it over all the "
                           "samples with rgrad.Batch (default: the fastest)")
    mode.add_argument("--replay", dest="mode", action="store_const", const="replay",
                      help="build the whole loss graph once, recompute it in place "
                           "each step")
    mode.add_argument("--eager", dest="mode", action="store_const", const="eager",
                      help="rebuild the loss graph each step, as micrograd does")
    demo.add_argument("--plot", metavar="FILE.png",
                      help="save the decision boundary to FILE.png (needs "
                           "matplotlib; without it, print it as text)")
    demo.set_defaults(parser=demo)
    bench = commands.add_parser(
        "bench", help="time rgrad against micrograd, PyTorch, JAX and CasADi",
        description="Time rgrad against micrograd 0.1.0 (with its garbage "
                    "collector on, and off around its timed rounds) and PyTorch "
                    "scalar tensors on bench/'s workloads: the chain at 3,000, "
                    "30,000 and 300,000 steps (build, backward), the worked "
                    "example and micrograd's demo step; then rgrad's replayed "
                    "demo step beside PyTorch tensors, jax.jit and CasADi, "
                    "each where installed. Every implementation gets the same "
                    "warm-up and rounds; the table gives each row's speed-up "
                    "over micrograd both ways, and checks that every "
                    "implementation computes micrograd's numbers.")
    bench.add_argument("--quick", action="store_true",
                       help="fewer rounds, chains of 3,000 and 30,000 steps only")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="save the speed-ups as a bar chart to FILE.png "
                            "(needs matplotlib)")
    bench.add_argument("--json", metavar="FILE",
                       help="write the raw results (every round's time) to FILE")
    bench.set_defaults(parser=bench)
    return p


def _check_folder(args, option, path):
    if path is not None:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            args.parser.error(f"argument {option}: no such directory: {folder}")


def main(argv=None):
    p = parser()
    args = p.parse_args(argv)
    if args.command == "bench":
        _check_folder(args, "--plot", args.plot)
        _check_folder(args, "--json", args.json)
        from . import benchmarks
        return benchmarks.main(quick=args.quick, plot_path=args.plot,
                               json_path=args.json)
    if args.plot is not None:
        folder = os.path.dirname(os.path.abspath(args.plot))
        if not os.path.isdir(folder):
            args.parser.error(f"argument --plot: no such directory: {folder}")
    from . import demo
    return demo.main(args.steps, args.seed, args.samples, replay=args.mode == "replay",
                     plot=args.plot, batch=args.mode == "batch")


if __name__ == "__main__":
    sys.exit(main())
