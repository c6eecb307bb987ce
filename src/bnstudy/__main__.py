"""`python -m bnstudy ...`: the same as the `bnstudy` command."""

from bnstudy.cli import main

if __name__ == "__main__":
    main()
