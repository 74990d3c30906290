"""Downloads through a loopback HTTP mirror: content, gzip, atomicity, clear errors."""

import gzip

import pytest

from bpaitac.data.download import copy_or_fetch, fetch
from bpaitac.io import InputError


def test_fetch_plain_and_gzip(mirror, tmp_path):
    root, url = mirror
    (root / "ocrs.csv").write_text("peak,chrom\n1,chr1\n")
    (root / "genome.fa.gz").write_bytes(gzip.compress(b">chr1\nACGT\n"))
    out = fetch(f"{url}/ocrs.csv", tmp_path / "out" / "ocrs.csv")
    assert out.read_text() == "peak,chrom\n1,chr1\n"
    out = fetch(f"{url}/genome.fa.gz", tmp_path / "out" / "genome.fa", gunzip=True)
    assert out.read_text() == ">chr1\nACGT\n"


def test_failed_download_leaves_nothing(mirror, tmp_path):
    _, url = mirror
    dest = tmp_path / "out" / "missing.bam"
    with pytest.raises(InputError, match=r"could not download .*missing\.bam.*download:"):
        fetch(f"{url}/missing.bam", dest, retries=1)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_empty_url_names_the_config_key(tmp_path):
    with pytest.raises(InputError, match="set the matching `download:` key"):
        fetch("", tmp_path / "x.bam")


def test_file_url_and_local_copy(tmp_path):
    src = tmp_path / "a.tsv"
    src.write_text("x\n")
    assert fetch(src.as_uri(), tmp_path / "b.tsv").read_text() == "x\n"
    assert copy_or_fetch(str(src), tmp_path / "c.tsv").read_text() == "x\n"
