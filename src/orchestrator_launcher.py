"""The ``orchestrator`` console script: Ctrl-C and a closed pipe end quietly from the start.

The script imports this small module, not the ``orchestrator`` package: importing the package
(pydantic, psycopg, procrastinate, the plugins) takes most of a second, and Ctrl-C during
that second would otherwise print a traceback. ``python -m orchestrator`` is the same command
without this guard.
"""

from __future__ import annotations

import os
import sys

EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


def main() -> int:
    try:
        from orchestrator._cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
