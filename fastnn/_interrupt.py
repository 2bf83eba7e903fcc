"""Ctrl-C during training: KeyboardInterrupt at the next batch boundary, never mid-step.

Python runs its SIGINT handler in the main thread between bytecodes, so without care a Ctrl-C
could surface between a training step's backward pass and its optimizer update, or between the
update and the iteration count, leaving a model that no later ``fit`` can continue from. While
``fit`` runs, :func:`deferred` replaces the default handler by one that only records the press;
``fit`` calls :meth:`Deferral.check` after each completed step (and around validation), which
raises the KeyboardInterrupt there. The kernels release the GIL and a batch is at most a few
hundred milliseconds of work for the models fastnn targets, so the interrupt arrives about as
fast as with the default handler. A second Ctrl-C before the next boundary raises at once (the
default behaviour), for a step that never finishes.

Only the default handler is replaced, and only in the main thread: a program that installed its
own SIGINT handler keeps it, and fit in another thread is never interrupted by Ctrl-C anyway.
"""
from __future__ import annotations

import contextlib
import signal
import threading


class Deferral:
    """Records a Ctrl-C until the training loop reaches a point where stopping is safe."""

    __slots__ = ("pending",)

    def __init__(self):
        self.pending = False

    def _handler(self, signum, frame):
        if self.pending:   # a second press: stop now, wherever the loop is
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        """Raise the recorded KeyboardInterrupt (call only where the model is consistent)."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


class _NoDeferral(Deferral):
    """Used where the handler cannot or must not be replaced (another thread, a user handler,
    a loop nested in one that already defers)."""

    def check(self) -> None:
        return None


_ACTIVE: list = []   # the Deferral whose handler is installed (main thread only)


@contextlib.contextmanager
def deferred():
    """Defer Ctrl-C to :meth:`Deferral.check` points for the duration of the block."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield _NoDeferral()
        return
    deferral = Deferral()
    signal.signal(signal.SIGINT, deferral._handler)
    _ACTIVE.append(deferral)
    try:
        yield deferral
    finally:
        _ACTIVE.pop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # A press after the last check point (during the final callbacks) is not lost.
    deferral.check()
