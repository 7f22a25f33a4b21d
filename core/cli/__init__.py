"""The CLI. parser.py builds argparse with only the standard library, so ``--help`` is instant; each command's
module imports torch and friends only when it runs."""
