"""The admission loop around the pure decision of ``corral.domain.scheduling``."""
