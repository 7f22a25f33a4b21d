"""Li & Li's patch-structured data and two-layer network: feature learning under standard vs adversarial training."""

from core.theory.simulate import TheoryConfig, TheoryResult, feature_alignment, simulate

__all__ = ["TheoryConfig", "TheoryResult", "feature_alignment", "simulate"]
