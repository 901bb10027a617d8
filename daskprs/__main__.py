"""``python -m daskprs``: the same as the ``daskprs`` command."""

from daskprs.cli import main

if __name__ == "__main__":
    main()
