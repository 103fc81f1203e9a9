"""ncfine: Neural Collapse and the fine-grained structure it hides."""

__version__ = "0.1.0"
