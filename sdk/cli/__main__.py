"""``python -m sdk.cli``: the same as the ``stratoflow`` console script."""

from sdk.cli import main

main()
