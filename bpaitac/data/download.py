"""Fetch the real inputs (mm10, the ImmGen OCR table, BAMs, FASTQs) with atomic downloads;
FASTQs resume with HTTP Range and are md5-verified (:func:`fetch_verified`).

Every source passes :func:`check_source` first: https, http and ftp URLs, and ``file://`` ones
from the config (a missing file fails at once instead of being retried). A download is complete
when the transport says so (the Content-Length was reached, or the chunked transfer encoding's
last chunk arrived); a response with neither (the server closes the connection to end it) is
verified by its content before it becomes an output (:func:`verify_unframed`): the gzip
end-of-stream and CRC, a BAM's BGZF end-of-file block, a BAI's structure, or the md5 where the
runs table gives one. A file with no such check (a plain table or FASTA) is refused, as a cut on a
line boundary would parse as a shorter, valid table.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

from bpaitac.io import InputError, atomic_path, require_file

log = logging.getLogger(__name__)
CHUNK = 1 << 20
T = TypeVar("T")
# Transfer errors worth retrying (URLError, HTTPError and timeouts are OSErrors; a cut chunked
# response raises http.client.IncompleteRead; a cut gzip stream EOFError).
TRANSFER_ERRORS = (OSError, EOFError, http.client.HTTPException)


SCHEMES = ("https", "http", "ftp")
"""URL schemes any source may use (a remote file report's URLs included)."""
CONFIG_SCHEMES = (*SCHEMES, "file")
"""URL schemes a source named in the config may use."""
GZIP_MAGIC = b"\x1f\x8b"
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
"""The empty BGZF block that ends every complete BAM (SAM/BAM specification, section 4.1.2)."""


class TruncatedError(OSError):
    """The server closed the connection before sending the whole file."""


class NotFoundError(InputError):
    """The source does not exist (HTTP 404, or a ``file://`` path that is not there)."""


def check_source(url: str, field: str, *, allow_file: bool = True) -> None:
    """Raise :class:`InputError` naming ``field`` (a config key, or a file report's column and
    line) unless ``url`` uses an allowed scheme (:func:`check_scheme`); a ``file://`` source
    must exist (:class:`NotFoundError`)."""
    parts = urlsplit(url)
    if check_scheme(url, field, allow_file=allow_file) == "file":
        path = Path(url2pathname(parts.path))
        if not path.is_file():
            raise NotFoundError(f"{field}: {url} does not exist (no file {path}); fix the path.")


def check_scheme(url: str, field: str, *, allow_file: bool = True) -> str:
    """The scheme of ``url``; raises :class:`InputError` naming ``field`` unless it is one of
    :data:`SCHEMES`, or ``file`` when ``allow_file`` (sources the config names)."""
    scheme = urlsplit(url).scheme.lower()
    allowed = CONFIG_SCHEMES if allow_file else SCHEMES
    if scheme not in allowed:
        raise InputError(
            f"{field}: {url!r} is not an allowed source (scheme {scheme or 'none'!r}); use a "
            f"{', '.join(allowed)} URL"
            + ("." if allow_file else " (a remote file report may name remote files only).")
        )
    return scheme


def _open(url: str, offset: int = 0, timeout: float = 60):
    """Open ``url``; ``offset > 0`` asks for the bytes from ``offset`` on (HTTP Range)."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _is_permanent(exc: BaseException) -> bool:
    """HTTP 4xx errors (but timeouts and rate limits) will not go away by retrying."""
    return (
        isinstance(exc, urllib.error.HTTPError)
        and 400 <= exc.code < 500
        and exc.code not in (408, 429)
    )


def _retrying(action: Callable[[], T], url: str, retries: int, backoff: float) -> T:
    """Call ``action`` up to ``retries`` times, sleeping ``backoff * 2**k`` s (at most 60 s)
    between tries; an HTTP 4xx error is raised at once. Re-raises the last error."""
    for attempt in range(1, retries + 1):
        try:
            return action()
        except TRANSFER_ERRORS as exc:
            log.warning("download of %s failed (attempt %d/%d): %s", url, attempt, retries, exc)
            if _is_permanent(exc) or attempt == retries:
                raise
            time.sleep(min(backoff * 2 ** (attempt - 1), 60))
    raise ValueError("retries must be >= 1")


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    field: str = "the download URL",
    gunzip: bool = False,
    retries: int = 3,
) -> Path:
    """Download ``url`` (http, https, ftp or file; :func:`check_source`) to ``dest`` atomically.

    ``gunzip=True`` decompresses a ``.gz`` payload on the fly. Progress is logged every ~5 s.
    A response without Content-Length or chunked encoding is verified by its content
    (:func:`verify_unframed`). A failed download leaves nothing at ``dest``; errors name
    ``field`` (the config key of the URL) or the URL.
    """
    if not url:
        raise InputError(
            f"no URL configured for {dest}: set the matching `download:` key in the config "
            "(see config/README.md) or place the file there yourself."
        )
    check_source(url, field)
    dest = Path(dest)

    def attempt() -> None:
        with atomic_path(dest) as tmp, _open(url) as response:
            raw = _Counted(response)
            stream = gzip.GzipFile(fileobj=raw) if gunzip else raw
            with open(tmp, "wb") as out:
                _copy_with_progress(stream, out, url, _length(response), fetched=lambda: raw.count)
            _check_complete(raw.count, _length(response), url)
            if not _framed(response):
                verify_unframed(tmp, url, dest, gunzipped=gunzip)

    try:
        _retrying(attempt, url, retries, backoff=2.0)
    except TRANSFER_ERRORS as exc:
        error = NotFoundError if _is_not_found(exc) else InputError
        raise error(
            f"could not download {url} to {dest}: {exc}. Check the URL ({field}; the `download:` "
            "section of the config) and your network, then rerun."
        ) from exc
    log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


def fetch_first(
    urls: Sequence[str],
    dest: str | os.PathLike,
    *,
    field: str = "the download URL",
    gunzip: bool = False,
    retries: int = 3,
) -> str:
    """:func:`fetch` the first of ``urls`` that exists (the spellings of a cell type in a URL
    template); returns it and logs which one it was. Only "not found" moves on to the next."""
    if not urls:
        raise ValueError("no URL to fetch")
    for k, url in enumerate(urls):
        try:
            fetch(url, dest, field=field, gunzip=gunzip, retries=retries)
        except NotFoundError:
            if k == len(urls) - 1:
                raise
            log.info("%s not found; trying %s", url, urls[k + 1])
            continue
        log.info("%s: found as %s (spelling %d of %d: %s)", dest, url, k + 1, len(urls), urls)
        return url
    raise AssertionError("unreachable")


def _is_not_found(exc: BaseException) -> bool:
    """HTTP 404 or 410, or a missing local file behind a file:// URL."""
    return (isinstance(exc, urllib.error.HTTPError) and exc.code in (404, 410)) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, FileNotFoundError)
    )


def _framed(response) -> bool:
    """Whether the transport tells a complete response from a cut one: a Content-Length, or
    the chunked transfer encoding (http.client raises IncompleteRead when its end is missing)."""
    headers = response.headers
    length = (headers.get("Content-Length") or "").strip()
    return length.isdigit() or "chunked" in (headers.get("Transfer-Encoding") or "").lower()


def verify_unframed(
    path: str | os.PathLike, url: str, dest: str | os.PathLike, gunzipped: bool = False
) -> None:
    """Check that a download whose length the server did not announce is whole, by content.

    ``gunzipped``: the gzip stream was read to its end-of-stream marker and CRC (a cut raises
    EOFError on the way). Otherwise by the name of ``dest``: a ``.bam`` must end with the BGZF
    end-of-file block, a ``.bai`` must parse to its end, a gzip file must decompress to its
    end; any other file raises :class:`InputError` (nothing can tell it whole). A cut file
    raises :class:`TruncatedError` (retried).
    """
    if gunzipped:
        return
    name = Path(dest).name.lower()
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
        fh.seek(max(0, path.stat().st_size - len(BGZF_EOF)))
        tail = fh.read()
    if name.endswith(".bam"):
        if tail != BGZF_EOF:
            raise TruncatedError(
                f"{url} ends without the BGZF end-of-file block: the download was cut short "
                "(the server sent no Content-Length to check it against)"
            )
    elif name.endswith(".bai"):
        from bpaitac.data.bam_reader import read_bai  # numba: only for this rare case

        try:
            read_bai(path)
        except InputError as exc:
            raise TruncatedError(f"{url}: {exc}") from exc
    elif magic == GZIP_MAGIC:
        try:
            with gzip.open(path) as fh:
                while fh.read(CHUNK):
                    pass
        except (OSError, EOFError) as exc:
            raise TruncatedError(f"{url} is not a whole gzip file ({exc})") from exc
    else:
        raise InputError(
            f"{url}: the server sent neither a Content-Length nor a chunked response, so a "
            f"connection cut short cannot be told from the end of the file, and {Path(dest).name} "
            "(not gzip, BAM or BAI) has no end marker to check; nothing was written to "
            f"{dest}. Fetch it from a server that sends its length, a .gz version, or "
            "download it yourself to that path."
        )
    log.info("%s: no Content-Length from the server; verified by content", url)


def fetch_verified(
    url: str,
    dest: str | os.PathLike,
    md5: str,
    *,
    run: str,
    retries: int = 5,
    backoff: float = 5.0,
) -> Path:
    """Download ``url`` to ``dest`` and check its md5 (a FASTQ of sequencing run ``run``).

    The bytes go to ``dest + ".part"``; an interrupted download (this call's retries or a
    later call) resumes from that partial file with an HTTP Range request. Only a file with the
    expected md5 is renamed onto ``dest``. A 404 raises at once; an md5 mismatch deletes the
    partial file. Each :class:`InputError` names the run and the URL.
    """
    return fetch_run([(url, dest, md5)], run=run, retries=retries, backoff=backoff)[0]


def fetch_run(
    files: Sequence[tuple[str, str | os.PathLike, str]],
    *,
    run: str,
    retries: int = 5,
    backoff: float = 5.0,
) -> list[Path]:
    """:func:`fetch_verified` for the (url, dest, md5) files of one run (R1, R2), renamed onto
    their destinations only once all are verified: when R2 fails, R1's verified partial file
    stays and the next try checks it again instead of fetching it anew."""
    for url, _, _ in files:
        check_source(url, f"run {run}")
    parts = []
    for url, dest, md5 in files:
        part = partial_path(dest)
        part.parent.mkdir(parents=True, exist_ok=True)
        _download_part(url, part, md5, run, retries, backoff)
        parts.append(part)
    for (url, dest, _), part in zip(files, parts):
        os.replace(part, dest)
        log.info("run %s: %s -> %s (%d bytes, md5 ok)", run, url, dest, Path(dest).stat().st_size)
    return [Path(dest) for _, dest, _ in files]


def partial_path(dest: str | os.PathLike) -> Path:
    """Where the download of ``dest`` is kept until it is complete and verified."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _download_part(url: str, part: Path, md5: str, run: str, retries: int, backoff: float) -> None:
    """Complete ``part`` from ``url`` (resuming) and verify its md5; raises InputError."""
    try:
        _retrying(lambda: _resume(url, part, f"run {run}"), url, retries, backoff)
    except TRANSFER_ERRORS as exc:
        if isinstance(exc, urllib.error.HTTPError) and exc.code == 404:
            raise InputError(
                f"run {run}: {url} not found (HTTP 404). Check the run's URL in the runs table "
                "(`download.run_table_url`, `download.fastq_mirror`) and rerun."
            ) from exc
        raise InputError(
            f"run {run}: could not download {url} after {retries} tries: {exc}. What arrived "
            f"is kept in {part}: rerun to resume, or check the URL and your network."
        ) from exc
    actual = file_md5(part)
    if actual != md5.lower():
        part.unlink()
        raise InputError(
            f"run {run}: {url} has md5 {actual}, expected {md5.lower()} (runs table); the "
            "download was deleted. Rerun to fetch it again; if it persists the file report's "
            "md5 or the mirror's copy is wrong."
        )


def _resume(url: str, part: Path, label: str) -> None:
    """Append the rest of ``url`` to ``part`` (Range from its size), or restart it when the
    server sends the whole file; raises :class:`TruncatedError` when cut short."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left to send: the partial file is complete
            log.info("%s: %s already complete (%d bytes)", label, part, offset)
            return
        raise
    with response:
        start = _range_start(response) if offset else 0
        if start != offset:
            log.info(
                "%s: server sent %s from byte %d, not %d: restarting", label, url, start, offset
            )
            offset = 0
        elif offset:
            log.info("%s: resuming %s at byte %d", label, url, offset)
        length = _length(response)
        with open(part, "ab" if offset else "wb") as out:
            got = _copy_with_progress(response, out, f"{label}: {url}", length, offset)
        _check_complete(got, length, url)


def _range_start(response) -> int:
    """First byte of a 206 response (``Content-Range: bytes START-END/TOTAL``); 0 otherwise."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range") or "")
    return int(match.group(1)) if getattr(response, "status", None) == 206 and match else 0


def _length(response) -> int:
    """The response's Content-Length, 0 when unknown."""
    value = response.headers.get("Content-Length") or ""
    return int(value) if value.isdigit() else 0


def _check_complete(got: int, expected: int, url: str) -> None:
    if expected and got < expected:
        raise TruncatedError(f"connection closed after {got} of {expected} bytes of {url}")


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in 1 MB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class _Counted:
    """A readable wrapper counting the bytes read (the compressed bytes under gzip)."""

    def __init__(self, raw) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data


def _copy_with_progress(
    stream, out, label: str, total: int, offset: int = 0, fetched: Callable[[], int] | None = None
) -> int:
    """Copy ``stream`` to the open file ``out``; log progress every ~5 s; return the bytes
    written. ``offset`` bytes were already there (a resumed download); ``fetched`` counts the
    bytes received when they differ from those written (gzip)."""
    done, last = 0, time.monotonic()
    while chunk := stream.read(CHUNK):
        out.write(chunk)
        done += len(chunk)
        if time.monotonic() - last > 5:
            got = offset + (fetched() if fetched else done)
            pct = f" ({100 * got / (offset + total):.0f}%)" if total else ""
            log.info("%s: %.1f MB%s", label, got / 1e6, pct)
            last = time.monotonic()
    return done


def is_gzip_url(url: str) -> bool:
    """True when the URL names a gzip file."""
    return url.split("?")[0].endswith(".gz")


def copy_or_fetch(src: str, dest: str | os.PathLike, field: str = "the source") -> Path:
    """Copy a local path, or fetch a URL (:func:`fetch`), to ``dest``; ``field`` names the
    config key of ``src`` in messages."""
    if "://" not in src:
        require_file(src, field, "fix the path in the config.")
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        return Path(dest)
    return fetch(src, dest, field=field, gunzip=is_gzip_url(src))
