"""The headline protocol's numbers (core/evaluation/headline.py), without torch, for the command line's help text
and the pages' wording."""

HEADLINE_STEPS = 20  # PGD steps, random start, seed 0, at the model's own ε and norm
HEADLINE_N = 1000  # the first N points of the test split (all of them for the built-in datasets)
