"""Step-up: challenges, proofs and the grants they yield (see CONTRACT.md §4.3)."""

__all__: list[str] = []
