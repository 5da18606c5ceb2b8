"""The parser the CLI reference page renders: the real one, with machine-dependent defaults named.

``sphinx-argparse`` prints each option's default; ``--processes`` defaults to the CPU count of
the machine that runs it, which would otherwise show as the docs builder's count.
"""

from __future__ import annotations

import argparse
import os

from streamq.cli import build_parser


def parser() -> argparse.ArgumentParser:
    """``streamq.cli.build_parser()`` with ``os.cpu_count()`` defaults shown by name."""
    p = build_parser()
    # argparse has no public way to walk subparsers; _actions is stable since 3.2.
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                for a in sub._actions:
                    if a.dest == "processes" and a.default == os.cpu_count():
                        a.default = "the number of CPUs"
    return p
