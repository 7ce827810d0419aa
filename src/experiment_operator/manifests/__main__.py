"""`python -m experiment_operator.manifests write|check [--root DIR]` (see the package doc)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiment_operator.manifests import stale_files, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiment_operator.manifests",
        description="Regenerate (write) or verify (check) every generated file of the repository.",
    )
    parser.add_argument("action", choices=["write", "check"])
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="repository root (default: current dir)"
    )
    args = parser.parse_args(argv)
    if args.action == "write":
        for path in write(args.root):
            print(f"wrote {path}")
        return 0
    stale = stale_files(args.root)
    for path in stale:
        print(f"stale: {path} (run `make manifests`)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
