"""Turn the signals a cluster sends before a time limit into a checkpoint at a batch boundary.

Two conventions meet here:

- `sbatch --signal=USR1@N` (Lightning's): nothing handles SIGUSR1 by default, so it is routed to
  Lightning's SIGTERM path. The loop stops at the next batch boundary with `SIGTERMException`,
  `RunFilesCallback.on_exception` saves last.ckpt, and the run exits 143 (re-run to resume).
- submitit (`SUBMITIT_PREEMPT_SIGNAL`, USR2 by default, sent `signal_delay_s` before the limit):
  submitit's own handler requeues the job and calls `sys.exit` from inside the handler, which can
  land in the middle of an optimizer step, before any checkpoint of the partial epoch. Its handler
  is deferred instead: the signal stops the loop like SIGTERM, the checkpoint is saved, and then
  `hand_over()` calls submitit's handler (requeue + exit), whose requeued job resumes from it.

Handlers are set only from the main thread (fit may run in another one: Ray Tune, a notebook
server) and restored when fit ends, so jobs of a multirun in one process each get their own.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

Handler = Callable[[int, Any], Any]


def submitit_signal() -> signal.Signals | None:
    """The signal submitit's job environment listens to, if this platform has it."""
    name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return getattr(signal, name if name.startswith("SIG") else f"SIG{name}", None)


def _is_submitit_handler(handler: Any) -> bool:
    return callable(handler) and (getattr(handler, "__module__", None) or "").startswith("submitit")


class PreemptionSignals:
    """Installs the handlers for one fit; `restore()` puts the previous ones back."""

    def __init__(self, notify_sigterm: Callable[[int], None]):
        # notify_sigterm(signum) raises Lightning's flag; the loop checks it at batch boundaries.
        self._notify = notify_sigterm
        self._previous: dict[int, Any] = {}
        self._deferred: tuple[Handler, int] | None = None
        self.sigterm_received = False

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        usr1 = getattr(signal, "SIGUSR1", None)
        if usr1 is not None and signal.getsignal(usr1) in (signal.SIG_DFL, None):
            self._set(usr1, lambda signum, _frame: self._notify(signum))
        preempt = submitit_signal()
        if preempt is not None and _is_submitit_handler(signal.getsignal(preempt)):
            submitit_handler = signal.getsignal(preempt)

            def defer(signum: int, _frame: Any) -> None:
                self._deferred = (submitit_handler, signum)
                self._notify(signum)

            self._set(preempt, defer)

    def watch_sigterm(self) -> None:
        """Note SIGTERM's arrival, then run the handler in place (Lightning's, registered when fit
        starts). Lightning's handler runs a DDP collective before it sets its own flag; when SLURM
        signals every node of a job at once (requeue, preemption) and a peer has already stopped,
        that collective raises, and only this note says the error was the interruption."""
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if not callable(current):
            return  # nothing handles SIGTERM in Python: the process just ends

        def note(signum: int, frame: Any) -> None:
            self.sigterm_received = True
            current(signum, frame)

        self._set(signal.SIGTERM, note)

    def hand_over(self) -> None:
        """Call the deferred handler (submitit: requeue, then `sys.exit`); call after checkpointing."""
        self.restore()
        if self._deferred is not None:
            handler, signum = self._deferred
            self._deferred = None
            handler(signum, None)

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _set(self, signum: int, handler: Handler) -> None:
        self._previous.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, handler)
