"""``python -m orchestrator`` is the ``orchestrator`` command."""

import sys

from orchestrator._cli import main

sys.exit(main())
