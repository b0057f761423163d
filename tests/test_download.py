"""``fif data download`` against a real HTTP server on 127.0.0.1 (never the internet).

The server (``LoopbackServer``, also used by benchmarks/download.py) serves generated FiF-format
dataset archives and info files, honours ``Range: bytes=N-`` (206, or 416 past the end), can
answer 404/500, ignore ranges, answer HTML, or drop the connection after N body bytes, and counts
the body bytes it sent per path, so resumption is measured in bytes.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fif_root_factory import DATASETS, make_fif_root

from fif.cli.main import main
from fif.data.fetch.download import DatasetRequest, DownloadOptions, _need_space, download_datasets
from fif.data.fetch.info_sources import InfoSource, info_files_for
from fif.data.fetch.manifest import (direct_download_url, folder_of, parse_manifest, read_checksums,
                                     read_manifest)
from fif.data.fetch.transfer import TransferError, fetch_resumable
from fif.data.format.registry import builtin_registry
from fif.errors import FifError

CHUNK = 64 << 10


# ---- the loopback server --------------------------------------------------------------------------

@dataclass
class Site:
    """What the server serves (URL path -> bytes or a file) and what it saw."""

    files: dict[str, bytes | Path] = field(default_factory=dict)
    served: Counter = field(default_factory=Counter)  # body bytes sent per path
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut_after: dict[str, int] = field(default_factory=dict)  # path -> drop the connection after N body bytes (once)
    status: dict[str, int] = field(default_factory=dict)  # path -> answer this error status instead
    ignore_range: set[str] = field(default_factory=set)  # paths whose ranges are ignored (200, whole file)
    html: set[str] = field(default_factory=set)  # paths answered as an HTML page
    pace: float = 0.0  # seconds to wait after each 64 KiB block (a slow link)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def size(self, path: str) -> int:
        data = self.files[path]
        return len(data) if isinstance(data, bytes) else data.stat().st_size

    def read(self, path: str, start: int, length: int) -> bytes:
        data = self.files[path]
        if isinstance(data, bytes):
            return data[start:start + length]
        with open(data, "rb") as handle:
            handle.seek(start)
            return handle.read(length)

    def ranged(self, path: str) -> list[str]:
        return [header for p, header in self.requests if p == path and header]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _range_start(self, size: int) -> int | None:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "") or "")
        return int(match.group(1)) if match else None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        site: Site = self.server.site  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        with site.lock:
            site.requests.append((path, self.headers.get("Range")))
        if path in site.status or path not in site.files:
            self.send_error(site.status.get(path, 404))
            return
        size = site.size(path)
        start = None if path in site.ignore_range else self._range_start(size)
        if start is not None and start >= size:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send_body(site, path, start or 0, size, partial=start is not None)

    def _send_body(self, site: Site, path: str, start: int, size: int, partial: bool) -> None:
        self.send_response(206 if partial else 200)
        kind = "text/html" if path in site.html else "application/octet-stream"
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        with site.lock:
            cut = site.cut_after.pop(path, None)
        end = size if cut is None else min(size, start + cut)
        position = start
        try:
            while position < end:
                block = site.read(path, position, min(CHUNK, end - position))
                self.wfile.write(block)
                position += len(block)
                with site.lock:
                    site.served[path] += len(block)
                time.sleep(site.pace)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client went away (killed)
            self.close_connection = True
            return
        if cut is not None:  # drop the connection mid-body
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 in a daemon thread; ``with LoopbackServer(site) as url:``."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.site = site  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---- fixtures --------------------------------------------------------------------------------------

@dataclass
class Mirror:
    """A generated FiF root served as the reference's files: archives + info files."""

    source: Path  # the generated root (tars, 00_info, datasets.json)
    site: Site
    url: str
    manifest: Path
    registry: Path

    def tar_path(self, folder: str) -> str:
        return f"/scl/fi/x{folder.lower()}/{folder}.tar"

    def archive(self, folder: str) -> bytes:
        return (self.source / f"{folder}.tar").read_bytes()

    def run(self, dest: Path, *extra: str) -> int:
        return main(["data", "download", str(dest), "--manifest", str(self.manifest), "--registry",
                     str(self.registry), "--info-from", f"{self.url}/info", "--no-progress", *extra])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fif_root(tmp_path_factory.mktemp("fif_source"), layout="tar").root


@pytest.fixture
def mirror(generated: Path, tmp_path: Path):
    site = Site()
    for folder in (d.folder for d in DATASETS):
        site.files[f"/scl/fi/x{folder.lower()}/{folder}.tar"] = (generated / f"{folder}.tar").read_bytes()
    for info in (generated / "00_info").iterdir():
        site.files[f"/info/{info.name}"] = info.read_bytes()
    with LoopbackServer(site) as url:
        manifest = tmp_path / "manifest.csv"
        manifest.write_text("# test mirror\n" + "".join(f"{url}/scl/fi/x{d.folder.lower()}/{d.folder}.tar?rlkey=k{i}\n"
                                                         for i, d in enumerate(DATASETS)))
        yield Mirror(generated, site, url, manifest, generated / "datasets.json")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isreg()}


def _extracted(archive: bytes, folder: str) -> dict[str, bytes]:
    """What extracting ``archive`` into ROOT should put under ROOT/<folder>."""
    return {name[len(folder) + 1:]: data for name, data in _members(archive).items()}


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ---- manifest --------------------------------------------------------------------------------------

def test_package_manifest_lists_the_63_benchmark_archives_as_direct_links():
    entries = read_manifest()
    registry = {spec.folder: spec for spec in builtin_registry().values()}
    assert len(entries) == 63
    assert {registry[e.folder].role for e in entries} == {"adaptation", "evaluation"}
    assert sum(registry[e.folder].role == "adaptation" for e in entries) == 41
    cifar = next(e for e in entries if e.folder == "CIFAR100")
    assert cifar.url.startswith("https://www.dropbox.com/scl/fi/") and "dl=" not in cifar.url
    assert cifar.download_url == cifar.url + "&dl=1"  # rlkey kept, dl=1 appended
    assert all(e.download_url.endswith("&dl=1") and "rlkey=" in e.download_url for e in entries)


def test_dropbox_links_get_dl_1_and_others_are_left_alone():
    assert direct_download_url("https://www.dropbox.com/s/ab/X.tar?dl=0") == "https://www.dropbox.com/s/ab/X.tar?dl=1"
    assert direct_download_url("https://dropbox.com/s/ab/X.tar") == "https://dropbox.com/s/ab/X.tar?dl=1"
    assert direct_download_url("http://127.0.0.1:8/X.tar?dl=0") == "http://127.0.0.1:8/X.tar?dl=0"
    assert folder_of("https://h/a/b/FGVCAircraft.tar?rlkey=1") == "FGVCAircraft"


def test_manifest_rows_take_an_optional_folder_and_sha256(tmp_path: Path):
    digest = "ab" * 32
    entries = parse_manifest(f"# c\nhttp://h/A.tar\nB_DIR,http://h/b.tar?x=1,{digest}\n\nhttp://h/C.tar,{digest.upper()}\n",
                             "m.csv")
    assert [(e.folder, e.sha256, e.where) for e in entries] == [("A", None, "m.csv:2"), ("B_DIR", digest, "m.csv:3"),
                                                               ("C", digest, "m.csv:5")]
    with pytest.raises(FifError, match=r"m.csv:2: A is listed twice \(first at m.csv:1\)"):
        parse_manifest("http://h/A.tar\nA,http://h/other.tar\n", "m.csv")
    with pytest.raises(FifError, match=r"m.csv:1: after the URL expected nothing or a 64-hex-digit SHA-256"):
        parse_manifest("http://h/A.tar,notahash\n", "m.csv")
    with pytest.raises(FifError, match=r"m.csv:1: expected \[FOLDER,\]URL\[,SHA256\]"):
        parse_manifest("ftp://h/A.tar\n", "m.csv")
    (tmp_path / "sums.txt").write_text(f"{digest}  CIFAR100.tar\n{'cd' * 32} *MNIST.tar\n")
    (tmp_path / "sums.json").write_text(json.dumps({"CIFAR100": digest}))
    assert read_checksums(tmp_path / "sums.txt") == {"CIFAR100": digest, "MNIST": "cd" * 32}
    assert read_checksums(tmp_path / "sums.json") == {"CIFAR100": digest}


def test_info_files_follow_the_reference_split_names():
    names = [(f.local, f.remote, f.required) for f in info_files_for("iNATURALIST2021", ("train", "test"))]
    assert names == [("iNATURALIST2021_train.json", "iNATURALIST2021_train_mini.json", True),
                     ("iNATURALIST2021_train_224.json", "iNATURALIST2021_train_mini_224.json", False),
                     ("iNATURALIST2021_test.json", "iNATURALIST2021_val.json", True),
                     ("iNATURALIST2021_test_224.json", "iNATURALIST2021_val_224.json", False),
                     ("iNATURALIST2021_classnames.json", "iNATURALIST2021_classnames.json", False)]
    assert [f.remote for f in info_files_for("MTSD", ("test",)) if f.required] == ["MTSD_val.json"]
    assert [f.remote for f in info_files_for("CIFAR100", ("test",)) if f.required] == ["CIFAR100_test.json"]


# ---- transfers -------------------------------------------------------------------------------------

def test_transfer_resumes_with_a_range_request_and_handles_200_and_416(tmp_path: Path):
    data = bytes(range(256)) * 4096  # 1 MiB
    site = Site(files={"/f.bin": data}, cut_after={"/f.bin": 300_000})
    with LoopbackServer(site) as url:
        part = tmp_path / "f.bin.part"
        with pytest.raises(TransferError, match=r"/f.bin: connection closed after 300000 of 1048576 bytes") as caught:
            fetch_resumable(f"{url}/f.bin", part)
        assert caught.value.retryable and part.stat().st_size == 300_000
        result = fetch_resumable(f"{url}/f.bin", part)
        assert (result.resumed_from, result.fetched, result.size) == (300_000, len(data) - 300_000, len(data))
        assert part.read_bytes() == data and site.served["/f.bin"] == len(data)  # not one byte twice
        assert site.ranged("/f.bin") == ["bytes=300000-"]
        again = fetch_resumable(f"{url}/f.bin", part)  # complete: the server answers 416
        assert (again.fetched, again.size) == (0, len(data)) and site.served["/f.bin"] == len(data)
        site.ignore_range.add("/f.bin")  # a server that ignores ranges: start again from zero
        part.write_bytes(data[:1000])
        restarted = fetch_resumable(f"{url}/f.bin", part)
        assert (restarted.resumed_from, restarted.fetched) == (0, len(data)) and part.read_bytes() == data


def test_transfer_errors_are_one_line_naming_the_url(tmp_path: Path):
    site = Site(files={"/page": b"<html>preview</html>"}, html={"/page"}, status={"/busy": 503})
    with LoopbackServer(site) as url:
        with pytest.raises(TransferError, match=rf"^{url}/nothing answered 404 Not Found$") as missing:
            fetch_resumable(f"{url}/nothing", tmp_path / "a.part")
        assert not missing.value.retryable and missing.value.status == 404
        with pytest.raises(TransferError, match=r"answered 503") as busy:
            fetch_resumable(f"{url}/busy", tmp_path / "b.part")
        assert busy.value.retryable
        with pytest.raises(TransferError, match=r"answered an HTML page, not an archive"):
            fetch_resumable(f"{url}/page", tmp_path / "c.part")
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(TransferError, match=rf"^http://127.0.0.1:{port}/x.tar: connection refused$") as refused:
        fetch_resumable(f"http://127.0.0.1:{port}/x.tar", tmp_path / "d.part")
    with pytest.raises(TransferError, match=r"^http://archive.invalid/x.tar: host not found \(") as unknown:
        fetch_resumable("http://archive.invalid/x.tar", tmp_path / "e.part")  # .invalid never resolves (RFC 6761)
    assert not refused.value.retryable and not unknown.value.retryable  # offline: fail at once, no waiting


# ---- the whole command -----------------------------------------------------------------------------

def test_download_extracts_verifies_records_checksums_and_a_rerun_is_a_no_op(mirror: Mirror, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture):
    dest = tmp_path / "fif"
    assert mirror.run(dest, "--jobs", "3") == 0
    out = capsys.readouterr().out
    assert "4 datasets: 4 complete, 0 corrupt, 0 missing" in out and "0 problems" in out
    for d in DATASETS:
        archive = mirror.archive(d.folder)
        extracted = {f"{d.folder}/{name}": data for name, data in _files(dest / d.folder).items()}
        assert extracted == _members(archive)  # byte for byte what the archive holds
        assert mirror.site.served[mirror.tar_path(d.folder)] == len(archive)
        recorded = json.loads((dest / ".downloads" / "checksums.json").read_text())[d.folder]
        assert recorded["sha256"] == hashlib.sha256(archive).hexdigest() and recorded["size"] == len(archive)
        assert (dest / "00_info" / f"{d.folder}_test.json").read_bytes() == (mirror.source / "00_info" /
                                                                            f"{d.folder}_test.json").read_bytes()
    assert sorted(p.name for p in (dest / ".downloads").iterdir()) == [".lock", "checksums.json", "info_absent.json"]
    assert not list(dest.glob("*.tar")) and not list(dest.glob(".extract-*"))
    assert main(["data", "verify", str(dest), "--registry", str(mirror.registry), "--no-progress",
                 "--workers", "0"]) == 0
    assert "4 complete" in capsys.readouterr().out
    requests = len(mirror.site.requests)
    assert mirror.run(dest) == 0  # everything is there: not one request
    assert len(mirror.site.requests) == requests
    assert "MONKEYS10: archive already extracted; 0 info files fetched" in capsys.readouterr().out


def test_an_interrupted_transfer_resumes_with_a_range_request(mirror: Mirror, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture):
    dest, path = tmp_path / "fif", mirror.tar_path("MONKEYS10")
    size, cut = mirror.site.size(path), mirror.site.size(path) // 3
    mirror.site.cut_after[path] = cut
    assert mirror.run(dest, "--retries", "0") == 2
    captured = capsys.readouterr()
    errors = _error_lines(captured.err)
    assert errors == [f"error: MONKEYS10: {mirror.url}{path}?rlkey=k0: connection closed after {cut} of {size} bytes"]
    assert "1 of 4 datasets failed; run the same command again to resume" in captured.err
    assert (dest / ".downloads" / "MONKEYS10.tar.part").stat().st_size == cut  # kept for the resume
    assert not (dest / "MONKEYS10").exists() and (dest / "CUB200").is_dir()  # the others finished
    assert "3 datasets: 3 complete" in captured.out  # the finished ones were verified
    assert mirror.run(dest) == 0
    assert mirror.site.ranged(path) == [f"bytes={cut}-"]
    assert mirror.site.served[path] == size  # no byte fetched twice
    assert re.search(r"MONKEYS10: [\d.]+ kB fetched, resumed at [\d.]+ kB, sha256 [0-9a-f]{16}\.\.\.; 72 files "
                     r"extracted; 5 info files fetched", capsys.readouterr().out)
    assert _files(dest / "MONKEYS10") == _extracted(mirror.archive("MONKEYS10"), "MONKEYS10")


def test_retries_resume_within_one_run(mirror: Mirror, tmp_path: Path):
    path = mirror.tar_path("CUB200")
    size = mirror.site.size(path)
    mirror.site.cut_after[path] = 1000
    entries = read_manifest(mirror.manifest)
    entry = next(e for e in entries if e.folder == "CUB200")
    request = DatasetRequest("cub200", "CUB200", entry.download_url, tuple(info_files_for("CUB200", ("train", "test"))))
    messages: list[str] = []
    outcomes = download_datasets(tmp_path / "fif", [request], InfoSource(f"{mirror.url}/info"),
                                 DownloadOptions(retries=2, backoff=0.01, progress=False), echo=messages.append)
    assert outcomes[0].status == "downloaded" and outcomes[0].resumed_from == 1000 and outcomes[0].fetched == size
    assert mirror.site.ranged(path) == ["bytes=1000-"] and mirror.site.served[path] == size
    assert any("connection closed after 1000" in m and "retrying in 0.01s (1 of 2 retries)" in m for m in messages)


def test_a_wrong_checksum_is_refused_and_the_file_removed(mirror: Mirror, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture):
    dest = tmp_path / "fif"
    actual = hashlib.sha256(mirror.archive("CUB200")).hexdigest()
    (tmp_path / "sums.json").write_text(json.dumps({"CUB200": "0" * 64}))
    assert mirror.run(dest, "--checksums", str(tmp_path / "sums.json")) == 2
    assert _error_lines(capsys.readouterr().err) == [
        f"error: CUB200: CUB200.tar does not match the expected SHA-256: expected {'0' * 64}, got {actual} "
        f"(the file was removed; run again to download it anew)"]
    assert not (dest / ".downloads" / "CUB200.tar").exists() and not (dest / ".downloads" / "CUB200.tar.part").exists()
    assert not (dest / "CUB200").exists() and (dest / "GTSRB").is_dir()
    (tmp_path / "sums.txt").write_text(f"{actual}  CUB200.tar\n")
    assert mirror.run(dest, "--checksums", str(tmp_path / "sums.txt")) == 0


def test_a_kept_archive_that_changed_since_its_first_download_is_refused(mirror: Mirror, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture):
    dest = tmp_path / "fif"
    assert mirror.run(dest, "--keep-archives", "--datasets", "gtsrb,flickr30k") == 0
    assert (dest / "GTSRB.tar").read_bytes() == mirror.archive("GTSRB")  # tar mode reads ROOT/<FOLDER>.tar
    assert main(["data", "verify", str(dest), "--tar", "--registry", str(mirror.registry), "--no-progress",
                 "--workers", "0"]) == 1  # monkeys10 and cub200 were not asked for
    assert "GTSRB" not in "".join(line for line in capsys.readouterr().out.splitlines() if "problem" in line)
    tampered = bytearray(mirror.archive("GTSRB"))
    tampered[700] ^= 0xFF
    (dest / "GTSRB.tar").write_bytes(bytes(tampered))
    shutil.rmtree(dest / "GTSRB")  # re-extraction from the kept archive checks it first
    assert mirror.run(dest, "--keep-archives", "--datasets", "gtsrb") == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith("error: GTSRB: GTSRB.tar does not match the SHA-256 recorded in ")
    assert not (dest / "GTSRB.tar").exists() and not (dest / "GTSRB").exists()
    assert mirror.run(dest, "--keep-archives", "--datasets", "gtsrb") == 0  # downloaded again, same digest
    assert (dest / "GTSRB.tar").read_bytes() == mirror.archive("GTSRB")


def test_a_404_names_the_dataset_and_the_url_and_the_others_finish(mirror: Mirror, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture):
    dest = tmp_path / "fif"
    del mirror.site.files[mirror.tar_path("GTSRB")]
    del mirror.site.files["/info/CUB200_train.json"]
    assert mirror.run(dest) == 2
    errors = _error_lines(capsys.readouterr().err)
    assert sorted(errors) == [
        f"error: CUB200: required info file CUB200_train.json not found at {mirror.url}/info/CUB200_train.json",
        f"error: GTSRB: {mirror.url}{mirror.tar_path('GTSRB')}?rlkey=k2 answered 404 Not Found"]
    assert (dest / "MONKEYS10").is_dir() and (dest / "FLICKR30K").is_dir() and not (dest / "GTSRB").exists()
    absent = json.loads((dest / ".downloads" / "info_absent.json").read_text())[f"{mirror.url}/info/"]
    assert absent == ["FLICKR30K_classnames.json"]  # an optional 404 is fine (retrieval sets have no class list)


def test_a_truncated_or_unsafe_archive_leaves_nothing_extracted(mirror: Mirror, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture):
    dest = tmp_path / "fif"
    archive = mirror.archive("CUB200")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        third = tar.getmembers()[3]
    mirror.site.files[mirror.tar_path("CUB200")] = archive[:third.offset]  # cut between two members
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        for name in ("GTSRB/ok.png", "GTSRB/../../escaped.png"):
            member = tarfile.TarInfo(name)
            member.size = 3
            tar.addfile(member, io.BytesIO(b"abc"))
    mirror.site.files[mirror.tar_path("GTSRB")] = evil.getvalue()
    assert mirror.run(dest, "--no-verify") == 2
    errors = sorted(_error_lines(capsys.readouterr().err))
    assert len(errors) == 2
    assert re.match(r"error: CUB200: archive .*CUB200.tar cannot be extracted \(ReadError: truncated: no "
                    r"end-of-archive block after the last member .*\); nothing was extracted$", errors[0])
    assert re.match(r"error: GTSRB: archive .*GTSRB.tar cannot be extracted \(OutsideDestinationError: .*\); "
                    r"nothing was extracted$", errors[1])
    assert not (dest / "CUB200").exists() and not (dest / "GTSRB").exists()
    assert not list(dest.glob(".extract-*")) and not (tmp_path / "escaped.png").exists()
    assert (dest / "MONKEYS10").is_dir()


def test_offline_from_file_urls_and_a_local_checkout(mirror: Mirror, tmp_path: Path):
    checkout = tmp_path / "fomo_in_flux"
    shutil.copytree(mirror.source / "00_info", checkout / "data_lib" / "00_info")
    (tmp_path / "local.csv").write_text(f"{(mirror.source / 'MONKEYS10.tar').as_uri()}\n")
    dest = tmp_path / "fif"
    assert main(["data", "download", str(dest), "--manifest", str(tmp_path / "local.csv"), "--registry",
                 str(mirror.registry), "--info-from", str(checkout), "--no-progress"]) == 0
    assert not mirror.site.requests  # no network at all
    assert InfoSource(checkout.as_uri()).folder == checkout / "data_lib" / "00_info"
    assert _files(dest / "MONKEYS10") == _extracted(mirror.archive("MONKEYS10"), "MONKEYS10")
    assert (dest / "00_info" / "MONKEYS10_train_224.json").is_file()  # optional files are copied where they exist
    with pytest.raises(FifError, match=r"--info-from .*nowhere: neither a URL nor an existing folder"):
        InfoSource(tmp_path / "nowhere")


def test_one_download_per_root_at_a_time(mirror: Mirror, tmp_path: Path):
    dest = tmp_path / "fif"
    (dest / ".downloads").mkdir(parents=True)
    with open(dest / ".downloads" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(FifError, match=r"another fif data download is working in .*fif"):
            download_datasets(dest, [], InfoSource(f"{mirror.url}/info"), DownloadOptions(progress=False))


def test_cli_usage_errors_are_one_line(mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture):
    assert mirror.run(tmp_path / "fif", "--datasets", "nosuchset") == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith("error: --datasets 'nosuchset' is not in the dataset registry")
    assert main(["data", "download", str(tmp_path / "fif"), "--manifest", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: manifest {tmp_path / 'missing.csv'} cannot be read")
    assert mirror.run(tmp_path / "fif", "--datasets", "cifar100") == 2  # in the registry file? no
    assert len(_error_lines(capsys.readouterr().err)) == 1
    assert main(["data", "download", str(tmp_path / "fif"), "--datasets", "cifar100", "--manifest",
                 str(mirror.manifest), "--no-progress"]) == 2  # built-in registry: cifar100 has no mirror entry
    assert capsys.readouterr().err.strip() == ("error: --datasets cifar100: the manifest has no archive for "
                                               "folder CIFAR100")


def test_offline_every_dataset_fails_at_once_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "m.csv").write_text(f"{base}/a/MONKEYS10.tar\n{base}/b/GTSRB.tar\n")
    started = time.perf_counter()
    assert main(["data", "download", str(tmp_path / "fif"), "--manifest", str(tmp_path / "m.csv"),
                 "--info-from", f"{base}/info", "--no-progress"]) == 2
    assert time.perf_counter() - started < 5  # a refused connection is not retried (no 2 + 4 + 8 s of pauses)
    assert sorted(_error_lines(capsys.readouterr().err)) == [
        f"error: GTSRB: {base}/b/GTSRB.tar: connection refused",
        f"error: MONKEYS10: {base}/a/MONKEYS10.tar: connection refused"]
    assert not list((tmp_path / "fif" / ".downloads").glob("*.part"))


def test_a_transfer_that_cannot_fit_on_the_disk_is_refused_before_writing(tmp_path: Path):
    free = shutil.disk_usage(tmp_path).free
    _need_space(tmp_path, free // 2, "X: the rest of its archive")
    with pytest.raises(FifError, match=rf"^X: the rest of its archive needs 1000.0 TB but {tmp_path} has "):
        _need_space(tmp_path, 10 ** 15, "X: the rest of its archive")


def test_ctrl_c_stops_at_once_and_keeps_the_part_for_the_next_run(mirror: Mirror, tmp_path: Path):
    path = mirror.tar_path("GTSRB")
    data = mirror.site.files[path] = bytes(8 << 20)  # 8 MiB at 64 KiB per 20 ms: about 2.6 s
    mirror.site.pace = 0.02
    dest = tmp_path / "fif"
    command = [sys.executable, "-m", "fif.cli", "data", "download", str(dest), "--manifest", str(mirror.manifest),
               "--registry", str(mirror.registry), "--info-from", f"{mirror.url}/info", "--no-progress",
               "--datasets", "gtsrb", "--no-verify"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while mirror.site.served[path] < (1 << 20) and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    started = time.perf_counter()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and err.strip().endswith("interrupted")
    assert time.perf_counter() - started < 2  # not after the 8 MiB transfer ended
    kept = (dest / ".downloads" / "GTSRB.tar.part").stat().st_size
    assert (1 << 20) <= kept < len(data) and not (dest / "GTSRB").exists()


def test_verification_problems_after_download_exit_1(mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture):
    bad = "gtsrb/GTSRB/Final_Test/Images/00000_00001.png"
    gtsrb = next(d for d in DATASETS if d.folder == "GTSRB")
    broken = make_fif_root(tmp_path / "broken", layout="tar", datasets=[gtsrb], truncate=[("GTSRB", bad)])
    mirror.site.files[mirror.tar_path("GTSRB")] = (broken.root / "GTSRB.tar").read_bytes()
    assert mirror.run(tmp_path / "fif", "--datasets", "gtsrb") == 1
    out = capsys.readouterr().out
    [problem] = [line for line in out.splitlines() if line.startswith("problem:")]
    assert problem.startswith(f"problem: image {tmp_path / 'fif' / 'GTSRB' / bad} is corrupt or unreadable")
    assert "1 datasets: 0 complete, 1 corrupt" in out
