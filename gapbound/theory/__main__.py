"""``python -m gapbound.theory`` (also ``python -m gapbound.certify``): certify the amortisation gap of a dictionary."""

from .cli import main

raise SystemExit(main())
