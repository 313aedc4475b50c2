"""Find a data set's four files, downloading, verifying and caching them when needed.

One routine for every :class:`~backend_mlp.data.sources.DatasetSpec`.  Where the
files are looked for, in order:

1. the ``data_dir`` argument (the CLI's ``--data-dir``),
2. the environment variable ``BACKEND_MLP_DATA``,
3. the cache folder :func:`default_cache_dir` (``$BACKEND_MLP_CACHE/<spec.name>``, else
   ``~/.cache/backend_mlp/<spec.name>``), downloading missing files into it.  Each data
   set has its own sub-folder: Fashion-MNIST and KMNIST use MNIST's file names.

An explicit folder (1 or 2) is never written to; each file may be there gzipped
(``NAME.gz``) or raw (``NAME``, or the ``train-images.idx3-ubyte`` spelling); two copies
of one file (say ``NAME`` and ``NAME.gz``) must have the same content, or the folder
is refused.
Downloads are checked against the SHA-256 of the uncompressed content
(``spec.sha256``), else of the served ``.gz`` bytes (``spec.sha256_gz``), else, for
a file without a known digest, for a valid IDX structure; they are written
atomically, stored as ``NAME.gz`` in the cache (the served gzip bytes unchanged).
Files in the cache are verified against the same digests every time they are loaded
(:func:`cached_file_problem`); a wrong one is downloaded again when downloads are
allowed (with a warning), else refused (:func:`replace_cached_file`).

Limits: a mirror's answer may not exceed :data:`MAX_DOWNLOAD_BYTES` (its
``Content-Length`` is checked before the body is read, the body while it is read), and
gzip data are decompressed within the size the IDX header declares
(:func:`~backend_mlp.data.idx.gunzip_idx`) and, for a file with a published digest, within that
file's published size (:data:`PUBLISHED_SIZES`); both are checked before any checksum of the content.
Where only the ``.gz`` digest is published, the served bytes are checked against it before they are
decompressed.  Problems raise
:class:`~backend_mlp.errors.DataError` (missing or unreadable files, conflicting copies),
:class:`~backend_mlp.errors.DownloadError` (no mirror reachable) or
:class:`~backend_mlp.errors.ChecksumError` (no mirror served data that verifies, a wrong cached file).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..errors import ChecksumError, DataError, DownloadError, InputValidationError
from ..files import atomic_write_bytes
from .idx import gunzip_idx, parse_idx, read_idx_bytes
from .sources import FASHION_MNIST, KMNIST, MNIST, DatasetSpec

__all__ = [
    "DATA_ENV",
    "CACHE_ENV",
    "ProgressCallback",
    "default_cache_dir",
    "locate_dataset",
    "MAX_DOWNLOAD_BYTES",
    "PUBLISHED_SIZES",
    "published_size",
    "cached_file_problem",
    "check_digest",
    "replace_cached_file",
    "verify_sha256",
]

#: Environment variable naming a folder that holds the data files.
DATA_ENV = "BACKEND_MLP_DATA"
#: Environment variable naming the base download cache folder (one sub-folder per data set).
CACHE_ENV = "BACKEND_MLP_CACHE"

#: The most bytes a mirror may send for one file (256 MiB; MNIST's largest file is 9.9 MB gzipped,
#: 47 MB raw): a larger ``Content-Length`` is refused before the body is read, a longer body once
#: it passes the limit.
MAX_DOWNLOAD_BYTES = 256 << 20

#: Uncompressed sizes of MNIST's files (from their headers: 60,000 / 10,000 28x28 images and labels), which
#: Fashion-MNIST and KMNIST share.
_MNIST_FORMAT_SIZES = {
    "train-images-idx3-ubyte": 47_040_016,
    "train-labels-idx1-ubyte": 60_008,
    "t10k-images-idx3-ubyte": 7_840_016,
    "t10k-labels-idx1-ubyte": 10_008,
}
#: Published SHA-256 digest (of a content or of a ``.gz`` file) -> uncompressed size of the file it is the
#: digest of: a file that must match that digest may not declare more (:func:`published_size`).
PUBLISHED_SIZES: Mapping[str, int] = {
    digest: _MNIST_FORMAT_SIZES[name]
    for spec in (MNIST, FASHION_MNIST, KMNIST)
    for digests in (spec.sha256, spec.sha256_gz)
    for name, digest in digests.items()
}

#: ``progress(file_name, bytes_received, total_bytes_or_None)``, called while downloading.
ProgressCallback = Callable[[str, int, "int | None"], None]

def _provide_hint(spec: DatasetSpec) -> str:
    return (
        f"To use {spec.title} files you already have, pass --data-dir FOLDER (data_dir=FOLDER in Python) "
        f"or set the environment variable {DATA_ENV}=FOLDER, where FOLDER holds the four {spec.title} files "
        "(gzipped NAME.gz or raw NAME)."
    )


def default_cache_dir(spec: DatasetSpec = MNIST) -> Path:
    """The download cache of ``spec``: ``$BACKEND_MLP_CACHE/<spec.name>``, else
    ``$XDG_CACHE_HOME/backend_mlp/<spec.name>``, else ``~/.cache/backend_mlp/<spec.name>``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser() / spec.name
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "backend_mlp" / spec.name


def published_size(spec: DatasetSpec, name: str, checksums: Mapping[str, str] | None = None) -> int | None:
    """The uncompressed size of the published file ``name`` must be, by the digest that decides for it (in
    ``checksums``, default ``spec.sha256``, else ``spec.sha256_gz``), when :data:`PUBLISHED_SIZES` knows it;
    else None.  Used as the limit when decompressing a file that must match that digest."""
    digest = (spec.sha256 if checksums is None else checksums).get(name) or spec.sha256_gz.get(name)
    return None if digest is None else PUBLISHED_SIZES.get(digest.lower())


def _spellings(name: str) -> list[str]:
    """Accepted file names for ``name``: raw first (fastest to read), then gzipped."""
    dotted = name.replace("-idx", ".idx")
    out = [name, dotted, name + ".gz", dotted + ".gz"]
    return list(dict.fromkeys(out))


def _find(folder: Path, name: str, where: str, fix: str) -> Path | None:
    """The copy of ``name`` in ``folder`` (raw first), None when there is none; ``where`` names the folder
    and ``fix`` says what to do in messages.  Several copies must have the same content."""
    try:
        found = [folder / c for c in _spellings(name) if (folder / c).is_file()]
    except PermissionError:
        raise _denied(where, folder, fix) from None
    if len(found) > 1:
        digests = {p: hashlib.sha256(read_idx_bytes(p)).hexdigest() for p in found}
        if len(set(digests.values())) > 1:
            a = found[0]
            b = next(p for p in found if digests[p] != digests[a])
            raise DataError(
                f"{where} holds two copies of {name} that differ: {a.name} and {b.name} (SHA-256 "
                f"{digests[a][:16]}... and {digests[b][:16]}... of their content); expected one copy, or "
                "identical ones. Delete the wrong one."
            )
    return found[0] if found else None


def _denied(where: str, folder: Path, fix: str) -> DataError:
    return DataError(f"cannot look into the {where}: permission denied; give your user access "
                     f"(chmod u+rx {folder}, or ask its owner) or {fix}")


def _explicit_folder(data_dir: str | os.PathLike[str] | None, spec: DatasetSpec) -> tuple[Path, str] | None:
    """The folder given by ``data_dir``, else by ``$BACKEND_MLP_DATA`` (its sub-folder ``<spec.name>`` when
    it has one, so one variable can serve several data sets), with where it came from."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "data_dir argument / --data-dir"
    env = os.environ.get(DATA_ENV)
    if env:
        sub = Path(env).expanduser() / spec.name
        if sub.is_dir():
            return sub, f"environment variable {DATA_ENV}, sub-folder {spec.name}"
        return Path(env).expanduser(), f"environment variable {DATA_ENV}"
    return None


def locate_dataset(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
    progress: ProgressCallback | None = None,
) -> dict[str, Path]:
    """Paths of the four files of ``spec``, keyed by file name (``spec.file_names``).

    Looks in ``data_dir``, else ``$BACKEND_MLP_DATA`` (or its sub-folder named
    ``spec.name`` when there is one), else the cache folder of
    ``spec``: ``cache_dir`` (this data set's files directly in it) or
    :func:`default_cache_dir` (``$BACKEND_MLP_CACHE/<spec.name>``, ...).  Only the cache is ever written
    to: with ``download=True`` missing files are fetched from ``mirrors`` (default
    ``spec.mirrors``) and verified against ``checksums`` (file name -> SHA-256 of the
    uncompressed content; default ``spec.sha256``), else against ``spec.sha256_gz``
    (of the served ``.gz`` bytes); a name in neither mapping is only checked for a
    valid IDX structure.
    Raises :class:`DataError` (missing files), :class:`DownloadError` (no mirror
    reachable) or :class:`ChecksumError`.
    """
    return _locate(spec, data_dir, download, cache_dir, mirrors, checksums, timeout, progress)[0]


def _locate(
    spec: DatasetSpec,
    data_dir: str | os.PathLike[str] | None,
    download: bool,
    cache_dir: str | os.PathLike[str] | None,
    mirrors: Sequence[str] | None,
    checksums: Mapping[str, str] | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> tuple[dict[str, Path], Path | None]:
    """:func:`locate_dataset`'s paths, and the cache folder when they are in the cache (else None)."""
    if not isinstance(spec, DatasetSpec):
        raise InputValidationError(
            f"spec: received {type(spec).__name__}; expected a DatasetSpec such as backend_mlp.data.MNIST"
        )
    explicit = _explicit_folder(data_dir, spec)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(spec)
    if explicit is not None:
        folder, source = explicit
        return _locate_explicit(spec, folder, source, cache), None

    where, fix = f"{spec.title} cache folder {cache}", f"set {CACHE_ENV} to a folder you own"
    found = {name: _find(cache, name, where, fix) for name in spec.file_names}
    missing = [name for name, p in found.items() if p is None]
    if missing and not download:
        raise DataError(
            f"{spec.title} files missing from the cache folder {cache}: {', '.join(missing)}; "
            f"download=False, so nothing was downloaded. Allow the download, or: {_provide_hint(spec)}"
        )
    if missing:
        mirror_list = _check_mirrors(spec, mirrors)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise InputValidationError(f"timeout: received {timeout!r}; expected a positive number of seconds")
        sums = spec.sha256 if checksums is None else checksums
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create the {spec.title} cache folder {cache}: {exc.strerror or exc}. "
                f"Set {CACHE_ENV} to a writable folder, or: {_provide_hint(spec)}"
            ) from None
        for name in missing:
            expected = (sums.get(name), spec.sha256_gz.get(name))
            found[name] = _download(spec, name, cache, mirror_list, expected, timeout, progress)
    return {name: p for name, p in found.items() if p is not None}, cache


def _locate_explicit(spec: DatasetSpec, folder: Path, source: str, cache: Path) -> dict[str, Path]:
    how = (
        f"Put the files there (each as NAME.gz, NAME, or NAME with '.idx' for '-idx') or point "
        f"--data-dir / {DATA_ENV} at a folder that has them"
        + (f", or leave both unset to download them automatically into the cache folder {cache}."
           if spec.mirrors else ".")
    )
    what = f"{spec.title} data folder {folder} (from the {source})"
    fix = f"point --data-dir / {DATA_ENV} at a copy you can read"
    try:
        if not folder.exists():
            raise DataError(f"{what} does not exist. {how}")
        if not folder.is_dir():
            raise DataError(f"{what} is not a folder. {how}")
    except PermissionError:  # a folder above it cannot be searched
        raise _denied(what, folder, fix) from None
    if not os.access(folder, os.X_OK):
        raise _denied(what, folder, fix)
    found = {name: _find(folder, name, what, fix) for name in spec.file_names}
    missing = [name for name, p in found.items() if p is None]
    if missing:
        raise DataError(
            f"{what} is missing {len(missing)} of {len(found)} files: {', '.join(missing)}. {how}"
        )
    return {name: p for name, p in found.items() if p is not None}


def _check_mirrors(spec: DatasetSpec, mirrors: Sequence[str] | None) -> tuple[str, ...]:
    if mirrors is None:
        if not spec.mirrors:
            raise DownloadError(
                f"{spec.title} has no download mirrors, so missing files cannot be downloaded. "
                f"{_provide_hint(spec)}"
            )
        return spec.mirrors
    if isinstance(mirrors, str):
        mirrors = (mirrors,)
    out = tuple(mirrors)
    if not out or not all(isinstance(m, str) and m for m in out):
        raise InputValidationError(
            f"mirrors: received {mirrors!r}; expected a non-empty sequence of base URLs "
            "such as 'https://example.org/mnist/'"
        )
    return out


def _fetch(url: str, name: str, timeout: float, progress: ProgressCallback | None) -> bytes:
    """The body served at ``url``; :class:`DataError` when it is larger than :data:`MAX_DOWNLOAD_BYTES`."""
    limit = MAX_DOWNLOAD_BYTES
    # A fresh opener per call so proxy settings are read from the environment now.
    opener = urllib.request.build_opener()
    request = urllib.request.Request(url, headers={"User-Agent": "backend_mlp"})
    with opener.open(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > limit:
            raise DataError(f"refused: Content-Length {total} bytes, more than the limit of {limit} bytes for "
                            "one file; nothing read")
        chunks: list[bytes] = []
        received = 0
        while True:
            chunk = response.read(min(1 << 16, limit + 1 - received))
            if not chunk:
                break
            if received + len(chunk) > limit:
                raise DataError(f"refused: the body is longer than the limit of {limit} bytes for one file; "
                                "stopped reading there")
            chunks.append(chunk)
            received += len(chunk)
            if progress is not None:
                progress(name, received, total)
    return b"".join(chunks)


def _download(
    spec: DatasetSpec,
    name: str,
    folder: Path,
    mirrors: tuple[str, ...],
    expected: tuple[str | None, str | None],
    timeout: float,
    progress: ProgressCallback | None,
) -> Path:
    """Fetch ``name`` from the first mirror that serves good data; store it as ``folder/NAME.gz``.

    ``expected`` is (SHA-256 of the uncompressed content, SHA-256 of the served .gz), either None."""
    expected_sha256, expected_gz = expected
    attempts: list[str] = []
    bad_data = False
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name + ".gz"
        try:
            payload = _fetch(url, name, timeout, progress)
        except DataError as exc:  # too large
            bad_data = True
            attempts.append(f"{url} ({exc})")
            continue
        except urllib.error.HTTPError as exc:
            exc.close()
            attempts.append(f"{url} (HTTP {exc.code} {exc.reason})")
            continue
        except urllib.error.URLError as exc:
            attempts.append(f"{url} ({exc.reason})")
            continue
        except (http.client.HTTPException, OSError, ValueError) as exc:
            attempts.append(f"{url} ({type(exc).__name__}: {exc})")
            continue

        is_gzip = payload.startswith(b"\x1f\x8b")
        if expected_sha256 is None and expected_gz is not None:  # the .gz digest decides: before decompressing
            problem = _verify_download(payload, b"", is_gzip, None, expected_gz)
            if problem:
                bad_data = True
                attempts.append(f"{url} ({problem})")
                continue
        size = PUBLISHED_SIZES.get((expected_sha256 or expected_gz or "").lower())
        try:  # within the size the IDX header declares (and the published size), before any checksum
            content = gunzip_idx(payload, f"{name}.gz", hint="", limit=size) if is_gzip else payload
        except DataError as exc:
            bad_data = True
            attempts.append(f"{url} ({exc})")
            continue
        problem = _verify_download(payload, content, is_gzip, expected_sha256, expected_gz)
        if problem:
            bad_data = True
            attempts.append(f"{url} ({problem})")
            continue
        if expected_sha256 is None and expected_gz is None:
            try:
                parse_idx(content, source=url, expected_magic=spec.magic(name))
            except DataError as exc:
                bad_data = True
                attempts.append(f"{url} (not a valid IDX file: {exc})")
                continue
        target = folder / (name + ".gz")
        atomic_write_bytes(target, payload if is_gzip else gzip.compress(content, mtime=0))
        return target

    tried = "; ".join(attempts)
    if bad_data:
        raise ChecksumError(
            f"could not get a valid copy of {spec.title} file {name}: every mirror either failed or "
            f"served data that did not verify (expected {_expected_text(expected_sha256, expected_gz)}). "
            f"Mirrors tried: {tried}. Last error: {attempts[-1]}. "
            f"Nothing was written to {folder}. {_provide_hint(spec)}"
        )
    raise DownloadError(
        f"could not download {spec.title} file {name} from any of {len(mirrors)} mirrors (no network "
        f"access, or the mirrors are down). Mirrors tried: {tried}. Last error: {attempts[-1]}. "
        f"{_provide_hint(spec)}"
    )


def cached_file_problem(
    spec: DatasetSpec, name: str, digests: Mapping[str, str], checksums: Mapping[str, str] | None = None
) -> str | None:
    """Why the cached file ``name`` does not verify, None when it does (or nothing is published for it).

    ``digests`` are the file's as loaded: ``"sha256"`` of its content, ``"sha256_gz"`` of the file
    when it is gzip.  The content digest in ``checksums`` (default ``spec.sha256``) decides, else
    ``spec.sha256_gz``, which a file stored uncompressed cannot match."""
    expected = (spec.sha256 if checksums is None else checksums).get(name)
    if expected is not None:
        if digests["sha256"] != expected.lower():
            return f"has SHA-256 {digests['sha256']} of its content; expected {expected}"
        return None
    expected = spec.sha256_gz.get(name)
    if expected is None:
        return None
    got = digests.get("sha256_gz")
    if got is None:
        return f"is stored uncompressed, so it cannot be checked against the published SHA-256 {expected} of {name}.gz"
    return None if got == expected else f"has SHA-256 {got}; expected {expected}, the published .gz file's"


def replace_cached_file(
    spec: DatasetSpec,
    name: str,
    path: Path,
    problem: str,
    *,
    download: bool = True,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float = 30,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download the cached file ``path`` of ``name`` again because of ``problem`` (:func:`cached_file_problem`),
    with a warning, and return the new path; raise :class:`ChecksumError` when downloads are off or
    ``spec`` has no mirrors."""
    where, can = f"{spec.title} file {path} in the download cache", bool(mirrors or spec.mirrors)
    if not download or not can:
        fix = "delete it and load again with downloads allowed to fetch a fresh copy" if can else \
            "replace it with the published file"
        why = "downloads are off: download=False" if can else f"{spec.title} has no download mirrors"
        raise ChecksumError(f"{where} {problem}; it is damaged or not the published data: {fix} ({why}).")
    warnings.warn(f"{where} {problem}; deleted it and downloaded it again", stacklevel=3)
    path.unlink(missing_ok=True)
    sums = spec.sha256 if checksums is None else checksums
    expected = (sums.get(name), spec.sha256_gz.get(name))
    return _download(spec, name, path.parent, _check_mirrors(spec, mirrors), expected, timeout, progress)


def _verify_download(
    payload: bytes, content: bytes | bytearray, is_gzip: bool, expected_sha256: str | None, expected_gz: str | None
) -> str | None:
    """Why a download does not verify (None when it does): the uncompressed digest decides when known."""
    if expected_sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected_sha256.lower():
            return f"SHA-256 mismatch: got {digest}, expected {expected_sha256} of the uncompressed file"
    elif expected_gz is not None:
        if not is_gzip:
            return f"served uncompressed data; only the SHA-256 of the .gz file is known ({expected_gz})"
        digest = hashlib.sha256(payload).hexdigest()
        if digest != expected_gz.lower():
            return f"SHA-256 mismatch: got {digest}, expected {expected_gz} of the .gz file"
    return None


def _expected_text(expected_sha256: str | None, expected_gz: str | None) -> str:
    if expected_sha256 is not None:
        return f"SHA-256 {expected_sha256} of the uncompressed file"
    if expected_gz is not None:
        return f"SHA-256 {expected_gz} of the .gz file"
    return "a valid IDX file"


def verify_sha256(content: bytes, expected: str, *, source: str | os.PathLike[str], title: str = "data") -> None:
    """Raise :class:`ChecksumError` unless ``content`` (uncompressed) has SHA-256 ``expected``."""
    check_digest(hashlib.sha256(content).hexdigest(), expected, source=source, title=title)


def check_digest(digest: str, expected: str, *, source: str | os.PathLike[str], title: str = "data") -> None:
    """Raise :class:`ChecksumError` unless ``digest`` (SHA-256 of a file's uncompressed content) is ``expected``."""
    if digest != expected.lower():
        raise ChecksumError(
            f"{title} file {source} has SHA-256 {digest} (of the uncompressed content); "
            f"expected {expected}. The file is damaged or not the expected data: replace it."
        )
