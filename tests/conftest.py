"""Fixtures shared by several test modules."""

import functools
import http.server
import threading

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
