"""``python -m gapbound.certify``: the command line of :func:`gapbound.certify` (see :mod:`gapbound.theory.cli`).

Run it with ``-m``; in Python use ``from gapbound import certify`` (the function).
"""

if __name__ == "__main__":
    from gapbound.theory.cli import main

    raise SystemExit(main())
