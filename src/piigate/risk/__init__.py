"""Risk assessment. The real signals (devices, geo, velocity) plug in behind ``RiskEngine``."""

from piigate.risk.port import CarriedRisk, RiskEngine

__all__ = ["CarriedRisk", "RiskEngine"]
