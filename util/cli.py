"""Helpers shared by the top-level scripts: one-line errors and a consistent exit status."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from util.io import DataError

EXIT_USAGE = 2


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


def run_main(main: Callable[[Any], int | None], args: Any) -> int:
    """Run a script's ``main(args)``; user errors (DataError) become one line on stderr and exit 2."""
    try:
        code = main(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
