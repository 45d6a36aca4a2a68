"""Graceful stop on SIGINT (Ctrl-C) and SIGTERM (cluster preemption, torchrun shutting down).

While :class:`GracefulStop` is active, the first SIGINT or SIGTERM only sets :attr:`requested`;
the training loop finishes its iteration, saves ``last.pt`` and exits, so the state on disk is
always that of a whole iteration. The handlers then revert to the previous ones, so a second
Ctrl-C interrupts at once (nothing saved; the last checkpoint on disk stays valid).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager turning the first SIGINT/SIGTERM into a stop request.

    Outside the main thread signal handlers cannot be installed; it then does nothing (Ctrl-C
    raises KeyboardInterrupt as usual).
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                previous = signal.signal(sig, self._handle)
                self._previous[sig] = signal.SIG_DFL if previous is None else previous
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()
