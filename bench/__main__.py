"""`python -m bench`: run every benchmark and print their figures (see run_all)."""

from bench.run_all import main

main()
