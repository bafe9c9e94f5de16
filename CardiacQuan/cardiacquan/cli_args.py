"""Argument types for the command line: nonsense numbers are refused before any work starts
(a zero batch or a negative time budget used to run, or crash deep inside training)."""
from __future__ import annotations

import argparse
import sys


class CQArgumentParser(argparse.ArgumentParser):
    """argparse that ends a usage error like every other user error: one `CQ-ERROR` line, exit 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"CQ-ERROR {self.prog}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _number(kind, low, inclusive, what):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}")
        if v < low or (not inclusive and v == low):
            raise argparse.ArgumentTypeError(f"{text} must be {what}")
        return v
    return parse


positive_int = _number(int, 0, False, "at least 1")
positive_float = _number(float, 0.0, False, "greater than 0")


def at_least(n):
    return _number(int, n, True, f"at least {n}")


def int_triple(text):
    """'60,10,10' -> (60, 10, 10): three counts >= 0."""
    try:
        v = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not three whole numbers like 60,10,10")
    if len(v) != 3 or min(v) < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be three counts >= 0 like 60,10,10")
    return v
