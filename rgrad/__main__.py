"""Command line: `python -m rgrad demo` trains micrograd's demo model."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rgrad")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="train micrograd's demo MLP on two moons")
    demo.add_argument("--steps", type=int, default=100)
    demo.add_argument("--seed", type=int, default=1337)
    demo.add_argument("--samples", type=int, default=100)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.samples < 2:
        parser.error("--steps must be >= 1 and --samples >= 2")
    from . import demo as demo_module
    return demo_module.main(args.steps, args.seed, args.samples)


if __name__ == "__main__":
    sys.exit(main())
