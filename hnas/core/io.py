"""Files in and out. Atomic writes: every LUT, checkpoint and run-state write goes through here (temp file +
rename); exclusive locks, for files that one process at a time may write (a LUT being built). Reads: the one JSON
reader (`read_json`, checked against a schema when given one), `read_text` and `load_yaml`: a file over its kind's
size limit, not UTF-8, or YAML that uses aliases (`*name`, which can expand a few hundred bytes into gigabytes) is
refused before it is parsed."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.schema import Spec, check


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either the old or the new file, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # the permissions of an ordinary new file, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data, indent: int | None = 1) -> None:
    """Atomic JSON write."""
    atomic_write_text(path, json.dumps(data, indent=indent) + "\n")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def exclusive(path: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (`what` names it in the refusal) while the block runs: `flock` on the lock
    file `.NAME.lock` beside it, which holds the owner's pid. Another holder is one line naming its pid, at once
    (no waiting). The lock dies with its process, so a killed owner leaves nothing that blocks a rerun."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise HnasError(
                f"{path} is {what} by another process (pid {owner}): wait for it to finish, or stop it, then rerun"
            ) from None
        try:
            current = os.stat(lock).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break  # the lock file this process holds is still the one at `lock` (its last owner did not remove it)
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


REDO = "restore it, or delete it to redo that step"


MiB = 2**20
MAX_FILE_BYTES = 64 * MiB  # the largest file hnas reads unless its kind says less (a LUT of many spaces is ~1 MB)


def read_text(path: str | Path, what: str = "", missing: str = "", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a file of at most `max_bytes`; a missing, oversized or binary file is one line naming it
    (`what PATH`, or the path alone) and, for a missing one, what to do (`missing`)."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise HnasError(f"{name} does not exist" + (f": {missing}" if missing else ""))
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(max_bytes + 1) if size <= max_bytes else b""  # read no more than the limit, whatever stat said
    if size > max_bytes or len(raw) > max_bytes:
        raise HnasError(
            f"{name} is {max(size, len(raw)) / MiB:.1f} MiB, over the {max_bytes / MiB:g} MiB a {what or 'file'} may "
            "take: give the right file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HnasError(
            f"{name} is not UTF-8 text (byte {exc.start} cannot be decoded): give a JSON or YAML text file"
        ) from None


def read_json(
    path: str | Path,
    spec: Spec | None = None,
    what: str = "",
    missing: str = "",
    broken: str | None = None,
    max_bytes: int = MAX_FILE_BYTES,
):
    """A JSON file's content, checked against `spec` when one is given: a missing, oversized, malformed or
    truncated file is one line naming it (`what PATH`, or the path alone) and, after it, what to do (`missing`;
    `broken`, by default `REDO` for a checked record and nothing otherwise). The one JSON reader of hnas."""
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    broken = (REDO if spec is not None else "") if broken is None else broken
    text = read_text(path, what, missing, max_bytes)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer of more than 4300 digits, deep nesting
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HnasError(f"{name} is not valid JSON ({first})" + (f"; {broken}" if broken else "")) from None
    return data if spec is None else check(data, spec, name)


def load_yaml(text: str, where: str):
    """The content of a YAML document, read with PyYAML's safe loader but without aliases: an alias (`*name`)
    is refused before anything is expanded, so a few hundred bytes cannot become gigabytes."""
    import yaml

    try:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise HnasError(f"{where} is not valid YAML{at}: {first}") from None


@functools.cache
def _no_alias_loader() -> type:
    """PyYAML's SafeLoader with aliases refused (built once, on the first YAML file read)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """PyYAML's SafeLoader, refusing aliases where they are composed (before they would be expanded)."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases (*{event.anchor}) are not allowed in hnas files: write the value out",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return NoAliasLoader
