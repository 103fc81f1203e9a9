"""`python -m ncfine.collect` = `ncfine-collect`."""

from ncfine.collect.cli import main

if __name__ == "__main__":
    main()
