"""Corral: a self-hosted control plane for AI workloads."""

__version__ = "0.1.0"
