"""Fixtures shared by several test modules."""

import dataclasses
import functools
import http.server
import re
import threading
from pathlib import Path

import pytest


@pytest.fixture()
def mirror(tmp_path):
    """Serve tmp_path/www on 127.0.0.1, an ephemeral port (a stand-in for the ImmGen, UCSC and
    Zenodo servers); yields (root directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range (``bytes=N-`` and ``bytes=N-M``: 206 + Content-Range, 416
    past the end), records each GET's path and Range header in ``server.requests`` and, for a
    path in ``server.cut`` (one-shot), sends the headers of the full response but only half its
    body before closing the connection (an interrupted download)."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            super().do_GET()
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        spec = self.headers.get("Range")
        if spec:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", spec.strip())
            if not m:
                self.send_error(400, "unsupported Range")
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), end) if m.group(2) else end
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start : end + 1]
        self.send_response(206 if spec else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if spec:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if self.path in self.server.cut:
            self.server.cut.discard(self.path)
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)


@dataclasses.dataclass
class RangeMirror:
    """A loopback server with HTTP Range: its root directory, base URL, the (path, Range header)
    of every GET so far, and the set of paths whose next response is cut halfway."""

    root: Path
    url: str
    requests: list
    cut: set


@pytest.fixture()
def range_mirror(tmp_path):
    """Serve tmp_path/ranged on 127.0.0.1 with :class:`RangeHandler`; yields a RangeMirror."""
    root = tmp_path / "ranged"
    root.mkdir()
    handler = functools.partial(RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests, server.cut = [], set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield RangeMirror(
        root, f"http://127.0.0.1:{server.server_address[1]}", server.requests, server.cut
    )
    server.shutdown()
