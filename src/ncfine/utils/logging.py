"""Rank-aware logging (after lightning-hydra-template's RankedLogger)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from lightning_utilities.core.rank_zero import rank_prefixed_message, rank_zero_only


class RankedLogger(logging.LoggerAdapter):
    """A logger that prefixes messages with the process rank and, by default, logs on rank 0 only."""

    def __init__(self, name: str = __name__, rank_zero_only: bool = True, extra: Mapping[str, object] | None = None):
        super().__init__(logging.getLogger(name), extra or {})
        self.rank_zero_only = rank_zero_only

    def log(self, level: int, msg: str, *args, rank: int | None = None, **kwargs) -> None:
        if not self.isEnabledFor(level):
            return
        current_rank = getattr(rank_zero_only, "rank", None)
        msg, kwargs = self.process(msg, kwargs)
        if current_rank is None:
            self.logger.log(level, msg, *args, **kwargs)
            return
        msg = rank_prefixed_message(msg, current_rank)
        if self.rank_zero_only:
            if current_rank == 0:
                self.logger.log(level, msg, *args, **kwargs)
        elif rank is None or current_rank == rank:
            self.logger.log(level, msg, *args, **kwargs)
