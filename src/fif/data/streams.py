"""Stream files (the reference format) and their chunking into tasks.

A stream file is a JSON list of ``"FOLDER+++classname"``: the order in which concepts arrive.
It is chunked into ``num_tasks`` contiguous tasks; the first ``len % num_tasks`` tasks get one
class more.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from fif.errors import FifError

SEPARATOR = "+++"
StreamEntry = tuple[str, str]  # (dataset folder, classname)


def shipped_streams() -> dict[str, Path]:
    folder = Path(str(resources.files("fif.data.mini") / "streams"))
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def resolve_stream(value: str) -> Path:
    """A stream given as a file path or as the name of a stream shipped with the package."""
    streams = shipped_streams()
    if value in streams:
        return streams[value]
    path = Path(value).expanduser()
    if path.is_file():
        return path
    raise FifError(f"experiment.dataset.sequence={value!r} is neither a file nor a shipped stream "
                   f"(shipped: {', '.join(streams)})")


def read_stream(path: str | Path) -> list[StreamEntry]:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise FifError(f"stream file {path} could not be read: {error}") from None
    if not isinstance(raw, list):
        raise FifError(f"stream file {path}: expected a JSON list of \"FOLDER+++classname\" strings")
    entries = []
    for position, item in enumerate(raw):
        if not isinstance(item, str) or SEPARATOR not in item:
            raise FifError(f"stream file {path}, entry {position}: {item!r} is not \"FOLDER+++classname\"")
        folder, classname = item.split(SEPARATOR, 1)
        entries.append((folder, classname))
    return entries


def write_stream(path: str | Path, entries: list[StreamEntry]) -> None:
    from fif.utils.io import atomic_write

    atomic_write(path, lambda f: f.write(json.dumps([f"{d}{SEPARATOR}{c}" for d, c in entries], indent=4)))


def chunk_into_tasks(entries: list[StreamEntry], num_tasks: int) -> list[list[StreamEntry]]:
    """Contiguous chunks; the first ``len(entries) % num_tasks`` chunks hold one entry more."""
    if num_tasks < 1:
        raise FifError(f"experiment.task.num={num_tasks} must be at least 1")
    if num_tasks > len(entries):
        raise FifError(f"experiment.task.num={num_tasks} exceeds the stream's {len(entries)} classes")
    base, extra = divmod(len(entries), num_tasks)
    tasks, start = [], 0
    for t in range(num_tasks):
        size = base + (1 if t < extra else 0)
        tasks.append(entries[start:start + size])
        start += size
    return tasks
