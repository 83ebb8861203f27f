"""`python -m toa` runs the command-line interface."""

from toa.cli import main

main()
