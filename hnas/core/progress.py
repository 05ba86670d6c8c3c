"""Progress bars for long work: one kind of bar for every phase (export, measurement, training, search).

A *progress factory* is `factory(label, total)`, a context manager yielding `advance(total_delta=0, **fields)`:
called with no delta it advances by one and shows `fields` (e.g. `loss=0.31, acc=0.92`) beside the bar; with a
delta it grows the total (a measurement that needs extra repeats). Library code takes a factory or None and
wraps it in `phase`, so it never knows whether a terminal is watching.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

Factory = Callable[[str, int], contextlib.AbstractContextManager]


class phase:
    """`with phase(factory, label, total) as advance:` — a bar when `factory` is given, else a no-op."""

    def __init__(self, factory: Factory | None, label: str, total: int):
        self._cm = factory(label, total) if factory else None

    def __enter__(self):
        if self._cm is None:
            return lambda total_delta=0, **fields: None
        return self._cm.__enter__()

    def __exit__(self, *exc):
        if self._cm is not None:
            return self._cm.__exit__(*exc)
        return False


def _fields_column():
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Fields(ProgressColumn):
        """`name value` for each field the task carries (floats with 3 decimals)."""

        def render(self, task):
            shown = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in task.fields.items()]
            return Text(" ".join(shown))

    return Fields()


def new_progress():
    """A rich Progress: label, bar, count, fields, elapsed time and ETA."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description:24s}"),
        BarColumn(),
        MofNCompleteColumn(),
        _fields_column(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )


def progress_on(prog, prefix: str = "") -> Factory:
    """A factory adding one task per phase to a shared Progress (one bar per device and phase)."""

    @contextlib.contextmanager
    def factory(label: str, total: int):
        task = prog.add_task(f"{prefix}{label}", total=total)

        def advance(total_delta: int = 0, **fields):
            if total_delta:
                prog.update(task, total=prog.tasks[task].total + total_delta)
            else:
                prog.update(task, advance=1, **fields)

        yield advance

    return factory


@contextlib.contextmanager
def bars():
    """A live Progress and its factory: `with bars() as factory: ...`."""
    with new_progress() as prog:
        yield progress_on(prog)


def standalone(label: str, total: int):
    """One bar on its own, for one phase (a factory itself: `phase(standalone, label, total)`)."""

    @contextlib.contextmanager
    def cm():
        with bars() as factory, factory(label, total) as advance:
            yield advance

    return cm()
