"""The checkpoint files of a run dir's checkpoints/ (no torch import: the launchers read it too).

A re-run resumes from the first of RESUME_ORDER that loads: last.ckpt, or previous.ckpt when
last.ckpt is missing or unreadable (a crash while it was written); `resume_hint` says so in the
error line of a run that stopped.
"""

import os
from pathlib import Path

LAST, PREVIOUS = "last.ckpt", "previous.ckpt"
RESUME_ORDER = (LAST, PREVIOUS)


def resume_hint(run_dir: str | os.PathLike) -> str:
    """What re-running does for this run dir: resume from its checkpoint, or start over."""
    for name in RESUME_ORDER:  # the order ncfine.run.pipeline.find_resume_checkpoint tries
        if (Path(run_dir) / "checkpoints" / name).exists():
            return f"re-run the same command to resume from checkpoints/{name}"
    return "re-run the same command to start it again"
