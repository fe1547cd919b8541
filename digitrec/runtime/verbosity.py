"""How chatty the command-line entry points are: ``-v``/``--verbose`` shows debug logs and TensorFlow's
own start-up lines, which are hidden by default (see ``digitrec.runtime.tf_loader``).

This module must not import TensorFlow: it runs before the first import, which reads the setting.
"""

from __future__ import annotations

import argparse
import logging
import os

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_verbose_flag(parser: argparse.ArgumentParser, *, subcommand: bool = False) -> None:
    """``-v``; on a subcommand it uses SUPPRESS so it does not reset a ``-v`` given before the command."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if subcommand else False,
        help="debug logging, and TensorFlow's own log lines",
    )


def configure(verbose: bool) -> None:
    """Set up logging; with ``verbose`` also let TensorFlow log (an explicit TF_CPP_MIN_LOG_LEVEL wins)."""
    if verbose:
        os.environ.setdefault(TF_LOG_LEVEL, "0")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    # TensorFlow's Python side logs through absl at INFO, e.g. "Sharding callback duration" at every
    # checkpoint save during training: its warnings stay, its chatter shows with -v only.
    logging.getLogger("absl").setLevel(logging.NOTSET if verbose else logging.WARNING)
