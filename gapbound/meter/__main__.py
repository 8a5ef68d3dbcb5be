"""``python -m gapbound.meter SAE_DIR ACTS``: measure a trained SAE's amortisation gap."""

import sys

from .core import main

main(sys.argv[1:])
