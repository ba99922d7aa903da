"""Generated gRPC stubs for spindle.v1, made on first use and cached.

The stubs are generated from the .proto files with Debian's ``protoc`` and
``/usr/bin/grpc_python_plugin`` (the protoc bundled with python3-grpc-tools is too old for proto3
``optional``), exactly as tests/e2e/conftest.py does, into a cache directory keyed by a hash of the
protos and of the installed protobuf runtime, so a change of either regenerates them. Several
processes importing at once are safe: generation happens under a file lock into a temporary
directory that is renamed into place.

Where things are found:

* protos: ``$SPINDLE_PROTOS`` (the directory holding ``spindle/v1/*.proto``), else ``protos/``
  next to the ``python/`` directory this package lives in.
* cache: ``$SPINDLE_STUBS_CACHE``, else ``$XDG_CACHE_HOME/spindle/stubs``, else
  ``~/.cache/spindle/stubs``.
* tools: ``$SPINDLE_PROTOC`` (default ``protoc`` on PATH) and ``$SPINDLE_GRPC_PYTHON_PLUGIN``
  (default ``/usr/bin/grpc_python_plugin``).

The generated modules import each other as ``spindle.v1.<name>_pb2``; this package's ``__path__``
is extended with the cache directory so that ``spindle.v1`` resolves there (a namespace package
inside this one) without touching ``sys.path``.

Thread-safety: ``load()`` is thread-safe and cheap after the first call.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib
import os
import shutil
import subprocess
import tempfile
import threading
import types
from pathlib import Path
from typing import Dict, List

import google.protobuf  # type: ignore[import]

__all__ = ["load", "protos_dir", "Modules"]

# The services, by the stem of their .proto file.
_PROTO_STEMS = ("common", "session", "lock", "queue", "value", "pool", "process", "scheduler", "server")

_lock = threading.Lock()
_loaded: "Modules | None" = None


class Modules:
    """The generated modules: ``m.lock_pb2``, ``m.lock_pb2_grpc``, ... for every spindle.v1 file."""

    def __init__(self, modules: Dict[str, types.ModuleType]) -> None:
        self._modules = modules

    def __getattr__(self, name: str) -> types.ModuleType:
        try:
            return self._modules[name]
        except KeyError:
            raise AttributeError(f"no generated module {name!r}") from None


def protos_dir() -> Path:
    """The directory holding ``spindle/v1/*.proto``.

    Raises:
        FileNotFoundError: when neither ``$SPINDLE_PROTOS`` nor the repository's ``protos/`` has them.
    """
    env = os.environ.get("SPINDLE_PROTOS")
    candidates: List[Path] = [Path(env)] if env else []
    # python/spindle/_stubs.py -> <repo>/protos
    candidates.append(Path(__file__).resolve().parent.parent.parent / "protos")
    for candidate in candidates:
        if (candidate / "spindle" / "v1" / "lock.proto").is_file():
            return candidate
    raise FileNotFoundError(
        "spindle: cannot find the .proto files (spindle/v1/*.proto); looked in "
        + ", ".join(f"'{c}'" for c in candidates) + "; set SPINDLE_PROTOS to the protos/ directory")


def _cache_root() -> Path:
    env = os.environ.get("SPINDLE_STUBS_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "spindle" / "stubs"


def _proto_files(root: Path) -> List[str]:
    return sorted(f"spindle/v1/{p.name}" for p in (root / "spindle" / "v1").glob("*.proto"))


def _digest(root: Path, files: List[str]) -> str:
    h = hashlib.sha256()
    h.update(google.protobuf.__version__.encode())
    for rel in files:
        h.update(rel.encode() + b"\0")
        h.update((root / rel).read_bytes())
    return h.hexdigest()[:16]


def _generate(root: Path, files: List[str], out: Path) -> None:
    protoc = os.environ.get("SPINDLE_PROTOC", "protoc")
    plugin = os.environ.get("SPINDLE_GRPC_PYTHON_PLUGIN", "/usr/bin/grpc_python_plugin")
    if shutil.which(protoc) is None:
        raise FileNotFoundError(f"spindle: '{protoc}' not found: install Debian's protobuf-compiler "
                                "(or set SPINDLE_PROTOC)")
    if not os.access(plugin, os.X_OK):
        raise FileNotFoundError(f"spindle: '{plugin}' not found: install Debian's protobuf-compiler-grpc "
                                "(or set SPINDLE_GRPC_PYTHON_PLUGIN)")
    proc = subprocess.run(
        [protoc, f"-I{root}", f"--python_out={out}", f"--grpc_python_out={out}",
         f"--plugin=protoc-gen-grpc_python={plugin}", *files],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"spindle: protoc failed (exit {proc.returncode}): {proc.stderr.strip()}")


def _ensure_generated() -> Path:
    """Returns the cache directory holding ``spindle/v1/*_pb2*.py``, generating it if needed."""
    root = protos_dir()
    files = _proto_files(root)
    cache = _cache_root()
    target = cache / _digest(root, files)
    if (target / "spindle" / "v1" / "lock_pb2_grpc.py").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            if (target / "spindle" / "v1" / "lock_pb2_grpc.py").is_file():
                return target  # Another process made it while we waited.
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache))
            try:
                _generate(root, files, tmp)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)
    return target


def load() -> Modules:
    """Generates the stubs if needed and imports them.

    Returns:
        The generated modules (``lock_pb2``, ``lock_pb2_grpc``, ... and ``common_pb2``).
    Raises:
        FileNotFoundError: protos, protoc or the gRPC Python plugin not found.
        RuntimeError: protoc failed.
    """
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        out = _ensure_generated()
        import spindle  # the package this module belongs to

        generated = str(out / "spindle")
        if generated not in spindle.__path__:
            spindle.__path__.append(generated)
        modules: Dict[str, types.ModuleType] = {}
        for stem in _PROTO_STEMS:
            modules[f"{stem}_pb2"] = importlib.import_module(f"spindle.v1.{stem}_pb2")
            if stem != "common":
                modules[f"{stem}_pb2_grpc"] = importlib.import_module(f"spindle.v1.{stem}_pb2_grpc")
        _loaded = Modules(modules)
        return _loaded
