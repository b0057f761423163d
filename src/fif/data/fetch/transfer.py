"""One resumable HTTP transfer into a ``.part`` file.

urllib (standard library) rather than requests: the project does not declare requests, and a
ranged GET with a streamed body needs nothing more. A rerun continues where the ``.part`` file
ends: ``Range: bytes=<size>-``; ``206`` appends, ``200`` (a server ignoring ranges) restarts the
file from zero, ``416`` means the file is already complete. A body shorter than its
``Content-Length`` (a dropped connection) is an interruption: the bytes received stay in the
``.part`` file for the next attempt. Redirects (Dropbox sends one) are followed with the same
``Range`` header.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from fif.errors import FifError

USER_AGENT = "fomo-in-flux-downloader/1 (python-urllib)"
CHUNK = 1 << 20
TIMEOUT = 60.0  # seconds without a byte before a transfer counts as interrupted


class TransferError(FifError):
    """A transfer that failed; ``retryable`` for interruptions, timeouts and 5xx answers, not for a
    404, an unknown host or a refused connection (offline: fail at once rather than wait).
    ``status`` is the HTTP status when the server answered with an error."""

    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


@dataclass
class TransferResult:
    size: int  # bytes in the file now
    fetched: int  # bytes received by this call
    resumed_from: int  # bytes the .part file held before (0: a fresh or restarted transfer)


def _no_progress(count: int) -> None:
    """Default progress callback."""


def _reason(error: urllib.error.URLError) -> str:
    reason = error.reason
    if isinstance(reason, socket.gaierror):
        return f"host not found ({reason.strerror or reason})"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(getattr(reason, "strerror", None) or reason)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/200`` -> (100, 200); ``bytes */200`` -> (None, 200)."""
    match = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total and total != "*" else None)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and offset:
            return error  # handled by the caller: complete, or restart
        raise TransferError(f"{url} answered {error.code} {error.reason}",
                            retryable=error.code >= 500 or error.code in (408, 429), status=error.code) from None
    except urllib.error.URLError as error:  # no answer: retried only when it may pass (a timeout, a reset)
        permanent = isinstance(error.reason, (socket.gaierror, ConnectionRefusedError)) or \
            getattr(error.reason, "errno", None) in (errno.ENETUNREACH, errno.EHOSTUNREACH)
        raise TransferError(f"{url}: {_reason(error)}", retryable=not permanent) from None
    except (OSError, http.client.HTTPException) as error:
        raise TransferError(f"{url}: {type(error).__name__}: {error}", retryable=True) from None


def _start(response, offset: int) -> int | None:
    """Where this response's body starts in the file: ``offset`` for a 206 of the asked range, 0 for
    a whole file (200, or a file:// URL), None for a 206 of some other range."""
    if getattr(response, "status", None) != 206:
        return 0
    start, _ = _content_range(response.headers.get("Content-Range"))
    return offset if start == offset else None


def _copy_body(response, part: Path, start: int, on_bytes: Callable[[int], None], url: str) -> int:
    length = response.headers.get("Content-Length")
    expected = int(length) if length and length.isdigit() else None
    received = 0
    with open(part, "r+b" if start else "wb") as out:
        out.seek(start)
        out.truncate()
        try:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                received += len(chunk)
                on_bytes(len(chunk))
        except (OSError, http.client.HTTPException) as error:  # reset, timeout, broken chunked body
            raise TransferError(f"{url}: transfer interrupted after {start + received} bytes "
                                f"({type(error).__name__}: {error})", retryable=True) from None
        finally:
            out.flush()
            os.fsync(out.fileno())
    if expected is not None and received != expected:
        raise TransferError(f"{url}: connection closed after {start + received} of {start + expected} bytes",
                            retryable=True)
    return received


def fetch_resumable(url: str, part: str | Path, on_bytes: Callable[[int], None] = _no_progress,
                    on_length: Callable[[int], None] = _no_progress, timeout: float = TIMEOUT,
                    refuse_html: bool = True) -> TransferResult:
    """Bring ``part`` to the complete content of ``url``, continuing what it already holds.

    ``on_length`` gets the number of bytes this call expects to receive (when the server says);
    ``on_bytes`` each chunk's size. Raises TransferError with one line naming the URL.
    """
    part = Path(part)
    part.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    if isinstance(response, urllib.error.HTTPError):  # 416: nothing left past our end
        _, total = _content_range(response.headers.get("Content-Range"))
        if total is None or total == offset:
            return TransferResult(offset, 0, offset)
        part.unlink()  # our file is longer than the server's: not the same file, start again
        return fetch_resumable(url, part, on_bytes, on_length, timeout, refuse_html)
    with response:
        kind = response.headers.get("Content-Type", "")
        if refuse_html and kind.split(";")[0].strip().lower() == "text/html":
            raise TransferError(f"{url} answered an HTML page, not an archive (is the link still valid? "
                                f"Dropbox links need dl=1)", retryable=False)
        start = _start(response, offset)
        if start is None:  # not the bytes we asked for: drop ours and let the retry start from zero
            part.unlink(missing_ok=True)
            raise TransferError(f"{url} answered {response.headers.get('Content-Range')!r} to a request for bytes "
                                f"{offset}-", retryable=True)
        length = response.headers.get("Content-Length")
        if length and length.isdigit():
            on_length(int(length))
        received = _copy_body(response, part, start, on_bytes, url)
    return TransferResult(start + received, received, start)
