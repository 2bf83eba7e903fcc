"""Command line: ``python -m fastnn demo`` | ``config`` | ``selftest``."""
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
    st = sub.add_parser("selftest", help="check every kernel variant this CPU runs against the reference; "
                                         "exit status 1 on any mismatch")
    st.add_argument("--family", action="append", dest="families", metavar="NAME",
                    help="a kernel family to test (repeatable; default: all)")
    st.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    st.add_argument("--threads", type=int, default=2,
                    help="thread count compared bit for bit with 1 thread (default 2)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from . import demo as demo_mod
        unknown = set(args.names) - set(demo_mod.DEMOS)
        if unknown:
            parser.error(f"unknown demo(s) {sorted(unknown)}; available: {sorted(demo_mod.DEMOS)}")
        demo_mod.main(args.verbose, args.names or None)
    elif args.command == "selftest":
        from . import selftest
        if args.families:
            unknown = set(args.families) - set(selftest.FAMILIES)
            if unknown:
                parser.error(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {sorted(unknown)}; "
                             f"available: {list(selftest.FAMILIES)}")
        if args.threads < 1:
            parser.error("--threads must be at least 1")
        return selftest.main(args.families, args.seed, args.threads)
    else:
        from . import show_config
        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
