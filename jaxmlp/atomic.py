"""Atomic file writes: a temp file beside the target, fsync, then os.replace.

Readers see the old file or the new one, never half of either; a killed writer leaves at most
a hidden `.<name>.<pid>.<random>.tmp` file, never a truncated target.
"""

from __future__ import annotations

import json
import math
import os
import secrets
from pathlib import Path


def write_bytes(path, data: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically, creating parent folders as needed.

    `durable=False` skips the fsyncs: still all-or-nothing when the process is killed (the
    rename is atomic and the page cache outlives the process), but a power loss may lose the
    write. For files rebuilt anyway after a crash, written many times a second on a GPU."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask (mkstemp would leave the file private, 0o600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path, text: str, *, durable: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), durable=durable)


def plain(obj):
    """JSON-ready copy: NaN/inf become null (strict JSON cannot spell them); arrays become lists."""
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        obj = obj.tolist()  # numpy / JAX scalars and arrays
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def write_json(path, obj, *, durable: bool = True) -> None:
    """Strict JSON, indent 2, keys in insertion order, NaN and infinities as null."""
    write_text(path, json.dumps(plain(obj), indent=2, allow_nan=False) + "\n", durable=durable)
