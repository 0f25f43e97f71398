"""``python -m lkproto.conformance ...`` (same as ``python -m lkproto conformance ...``)."""

from __future__ import annotations

import sys

from lkproto.conformance.cli import main

if __name__ == "__main__":
    sys.exit(main())
