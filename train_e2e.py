#!/usr/bin/env python3
"""train_e2e: not implemented yet; a later issue fills this entry point."""

from __future__ import annotations

import argparse
import sys

from util.cli import not_implemented


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    return not_implemented("train_e2e.py")


if __name__ == "__main__":
    sys.exit(main(get_args()))
