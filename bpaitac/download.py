"""Fetch the real inputs (mm10, the ImmGen OCR table, BAMs) with resumable, atomic downloads."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from bpaitac.io import InputError, atomic_path

log = logging.getLogger(__name__)
CHUNK = 1 << 20


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
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with atomic_path(dest) as tmp, urllib.request.urlopen(url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0)
                stream = gzip.GzipFile(fileobj=response) if gunzip else response
                _copy_with_progress(stream, tmp, url, total)
            log.info("downloaded %s -> %s (%d bytes)", url, dest, dest.stat().st_size)
            return dest
        except (OSError, EOFError) as exc:  # URLError is an OSError
            last_error = exc
            log.warning("download of %s failed (attempt %d/%d): %s", url, attempt, retries, exc)
            permanent = isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500
            if permanent or attempt == retries:
                break
            time.sleep(min(2**attempt, 10))
    raise InputError(
        f"could not download {url} to {dest}: {last_error}. Check the URL in the `download:` "
        "section of the config and your network, then rerun."
    )


def _copy_with_progress(stream, out_path: Path, url: str, total: int) -> None:
    done, last = 0, time.monotonic()
    with open(out_path, "wb") as out:
        while chunk := stream.read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            if time.monotonic() - last > 5:
                pct = f" ({100 * done / total:.0f}%)" if total else ""
                log.info("%s: %.1f MB%s", url, done / 1e6, pct)
                last = time.monotonic()


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
