"""What every Python example shares: finding the ``spindle`` package, the ``--address`` flag,
unique object names and the way local processes are started.

Not an example itself.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import uuid
from pathlib import Path
from typing import Any

# Run from a checkout: the helper package lives in <repo>/python.
_REPO_PYTHON = Path(__file__).resolve().parents[2] / "python"
if (_REPO_PYTHON / "spindle" / "__init__.py").is_file() and str(_REPO_PYTHON) not in sys.path:
    sys.path.insert(0, str(_REPO_PYTHON))

import spindle  # noqa: E402  (after the path set-up above)

__all__ = ["spindle", "arguments", "unique", "processes"]


def arguments(description: str, **extra: Any) -> argparse.ArgumentParser:
    """A parser with ``--address`` (default $SPINDLE_ADDRESS or 127.0.0.1:50051)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--address", default=os.environ.get("SPINDLE_ADDRESS", spindle.DEFAULT_ADDRESS),
                        help="spindled host:port (default: $SPINDLE_ADDRESS or %(default)s)")
    return parser


def unique(kind: str) -> str:
    """A fresh object name, so that runs against a long-lived server do not meet each other."""
    return f"examples/{kind}/{uuid.uuid4().hex[:10]}"


def processes() -> Any:
    """The multiprocessing context for the examples' local processes.

    A gRPC channel does not survive fork(), so every process makes its own spindle.Client.
    "forkserver" forks each child from a clean server process that has already imported
    spindle and grpc (no channel, no thread yet), which starts children much faster than "spawn".
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["spindle", "grpc"])
    return context
