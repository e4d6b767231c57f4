"""``python -m memos.cli``: the same as the ``memos`` command."""

import sys

from memos.cli import main

sys.exit(main())
