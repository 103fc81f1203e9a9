"""The checkpoint files of a run dir's checkpoints/ (no torch import: the launchers read it too).

A re-run resumes from the first of RESUME_ORDER that loads: last.ckpt, or previous.ckpt when
last.ckpt is missing or unreadable (a crash while it was written).
"""

LAST, PREVIOUS = "last.ckpt", "previous.ckpt"
RESUME_ORDER = (LAST, PREVIOUS)
