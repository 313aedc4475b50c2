"""Writing files safely: the one atomic writer, and the one strict JSON writer built on it.

:func:`atomic_write_bytes` writes to a temporary file in the target's folder,
fsyncs it and renames it into place with ``os.replace``, so an interrupted
write (including Ctrl-C) never leaves a partial file; the file gets the mode a
plain ``open()`` would give it (0666 less the umask).  Data files, checkpoints,
models, figures and JSON reports are all written through it.

:func:`write_json` writes strict JSON: non-finite floats become ``null``
(``NaN``/``Infinity`` are not JSON), NumPy scalars become Python numbers,
tuples become lists and paths become strings (:func:`json_ready`).  Anything
else that ``json`` cannot write raises ``TypeError`` naming its type before
the file is touched, so an existing file is never left half-written.

Failures to create or write a file raise :class:`backend_mlp.errors.DataError`
naming the path; :func:`read_bytes` and :func:`reading` do the same for reading (a missing file, a
folder, permission denied), with the error type the caller chooses.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any, BinaryIO

import numpy as np  # host-side I/O only: NumPy scalars in reports

from .errors import BackendMLPError, DataError

__all__ = ["atomic_write_bytes", "json_ready", "read_at_most", "read_bytes", "reading", "write_json"]


def read_bytes(
    path: str | os.PathLike[str],
    what: str,
    expected: str,
    error: type[Exception] = DataError,
    *,
    max_bytes: int | None = None,
) -> bytes:
    """The content of the file ``path`` (a ``what`` such as ``"IDX file"``); ``error`` names what went wrong.

    A missing file, a folder, an unreadable file (permission denied included) or, with ``max_bytes``, a
    file larger than that (checked before reading it) raises ``error`` with one line that says which
    and what was ``expected`` (e.g. ``"a .npz file"``).
    """
    p = Path(path)
    with reading(p, what, expected, error) as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{what} {p} has {size} bytes, more than the limit of {max_bytes}; expected {expected}")
        if max_bytes is None:
            return fh.read()
        data = read_at_most(fh, max_bytes)
        if len(data) > max_bytes:  # a file that grew, or one without a size
            raise error(f"{what} {p} has more than {max_bytes} bytes, the limit; expected {expected}")
        return data


def read_at_most(fh: BinaryIO, n: int) -> bytes:
    """The rest of ``fh`` up to ``n + 1`` bytes (one more tells that there were more), read in pieces of
    16 MiB: a single ``fh.read(n + 1)`` would reserve ``n + 1`` bytes first, however short the file."""
    chunks: list[bytes] = []
    while n >= 0 and (chunk := fh.read(min(n + 1, 1 << 24))):
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def reading(
    path: str | os.PathLike[str], what: str, expected: str, error: type[Exception] = DataError
) -> Iterator[BinaryIO]:
    """``path`` open for binary reading; an ``OSError`` while opening or reading it becomes ``error``
    with one line naming the file (see :func:`read_bytes`).  Errors of this library pass unchanged."""
    p = Path(path)
    try:
        fh = open(p, "rb")  # closed below
    except FileNotFoundError:
        raise error(f"{what} not found: {p} (expected {expected})") from None
    except IsADirectoryError:
        raise error(f"{what} {p} is a folder; expected {expected}") from None
    except PermissionError:
        raise error(
            f"cannot read {what} {p}: permission denied; make it readable for your user (chmod u+r {p}, or ask "
            "its owner) or use a copy you can read"
        ) from None
    except OSError as exc:
        raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    with fh:
        try:
            yield fh
        except BackendMLPError:
            raise
        except OSError as exc:  # e.g. an I/O error in the middle of the file
            raise error(f"cannot read {what} {p}: {exc.strerror or exc}") from None


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder, fsync and ``os.replace``.

    The file gets the mode a plain ``open`` would give it (0666 less the umask).

    On any failure (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left as it was.
    """
    p = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"cannot create a file in folder {p.parent}: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give a normal file's mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, DataError):
            raise DataError(f"cannot write file {p}: {exc.strerror or exc}") from exc
        raise
    _fsync_dir(p.parent)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Best effort: make the rename durable (not supported on every platform)."""
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


def json_ready(value: Any) -> Any:
    """``value`` with every nested value turned into one that strict JSON can hold (see the module)."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def write_json(path: str | os.PathLike[str], data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as indented strict JSON to ``path`` atomically (with a final newline)."""
    text = json.dumps(json_ready(data), indent=indent, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode("utf-8"))
