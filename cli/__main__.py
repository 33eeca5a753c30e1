"""`python -m synctalk_parity.cli ...`: the `parity` command without the console script."""

from .app import main

main()
