"""`python -m hnas.cli` (what torchrun launches)."""

from hnas.cli import main

main()
