"""Fetch the real inputs (mm10, the ImmGen OCR table, BAMs, FASTQs) with atomic downloads;
FASTQs resume with HTTP Range and are md5-verified (:func:`fetch_verified`)."""

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

from bpaitac.io import InputError, atomic_path

log = logging.getLogger(__name__)
CHUNK = 1 << 20
T = TypeVar("T")
# Transfer errors worth retrying (URLError, HTTPError and timeouts are OSErrors; a cut chunked
# response raises http.client.IncompleteRead; a cut gzip stream EOFError).
TRANSFER_ERRORS = (OSError, EOFError, http.client.HTTPException)


class TruncatedError(OSError):
    """The server closed the connection before sending the announced number of bytes."""


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


def fetch(url: str, dest: str | os.PathLike, *, gunzip: bool = False, retries: int = 3) -> Path:
    """Download ``url`` (http, https, ftp or file) to ``dest`` atomically.

    ``gunzip=True`` decompresses a ``.gz`` payload on the fly. Progress is logged every ~5 s.
    A failed download leaves nothing at ``dest``.
    """
    if not url:
        raise InputError(
            f"no URL configured for {dest}: set the matching `download:` key in the config "
            "(see config/README.md) or place the file there yourself."
        )
    dest = Path(dest)

    def attempt() -> None:
        with atomic_path(dest) as tmp, _open(url) as response:
            raw = _Counted(response)
            stream = gzip.GzipFile(fileobj=raw) if gunzip else raw
            with open(tmp, "wb") as out:
                _copy_with_progress(stream, out, url, _length(response), fetched=lambda: raw.count)
            _check_complete(raw.count, _length(response), url)

    try:
        _retrying(attempt, url, retries, backoff=2.0)
    except TRANSFER_ERRORS as exc:
        raise InputError(
            f"could not download {url} to {dest}: {exc}. Check the URL in the `download:` "
            "section of the config and your network, then rerun."
        ) from exc
    log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
    return dest


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


def copy_or_fetch(src: str, dest: str | os.PathLike) -> Path:
    """Copy a local path, or fetch a URL, to ``dest``."""
    if "://" not in src:
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        return Path(dest)
    return fetch(src, dest, gunzip=is_gzip_url(src))
