"""``python -m ntm``: the same as the ``ntm`` command."""

from ntm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
