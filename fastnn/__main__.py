"""Command line: ``python -m fastnn demo`` | ``config``."""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastnn", description="fastnn command line")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on the shipped data sets and report accuracy and speed")
    demo.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    demo.add_argument("names", nargs="*", help="demos to run (default: all)")
    sub.add_parser("config", help="show the kernel variant, OpenMP and threads")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo as demo_mod
        unknown = set(args.names) - set(demo_mod.DEMOS)
        if unknown:
            parser.error(f"unknown demo(s) {sorted(unknown)}; available: {sorted(demo_mod.DEMOS)}")
        demo_mod.main(args.verbose, args.names or None)
    else:
        from . import show_config
        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
