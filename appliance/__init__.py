"""MechInterp Studio appliance: API server, job worker and ML pipeline for SAE interpretability."""

__version__ = "0.1.0"
