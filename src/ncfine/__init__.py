"""ncfine: Neural Collapse and the fine-grained structure it hides."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `ncfine.analyze(module, data, layers=...)` without importing torch on `import ncfine`.
    if name == "analyze":
        from ncfine.posthoc.analyze import analyze

        return analyze
    raise AttributeError(f"module 'ncfine' has no attribute {name!r}")
