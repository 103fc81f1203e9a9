"""Optimizer helpers: parameter groups (weight decay on which parameters) and learning-rate schedulers."""
