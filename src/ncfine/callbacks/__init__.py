"""Lightning callbacks: thin adapters from the training loop to `ncfine.analysis` and the run dir."""

from ncfine.callbacks.fine_recovery import FineRecoveryCallback
from ncfine.callbacks.neural_collapse import NeuralCollapseCallback

__all__ = ["NeuralCollapseCallback", "FineRecoveryCallback"]
