"""``python -m gapbound.meter SAE_DIR ACTIVATIONS``: measure a trained SAE's amortisation gap."""

import sys

from .cli import main

sys.exit(main())
