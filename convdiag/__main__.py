"""``python -m convdiag`` runs the command line."""

from convdiag.cli import main

if __name__ == "__main__":
    main()
