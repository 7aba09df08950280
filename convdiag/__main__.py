"""``python -m convdiag`` runs the command line."""

import os
import sys

# ``python -m`` puts the working folder first on sys.path, so a stray ``PIL.py`` or
# ``numpy.py`` there would run on import. A user's own --model/--adapter module is still
# found there: convdiag.load.factory looks it up in the working folder for that import only.
sys.path[:] = [p for p in sys.path if p not in ("", ".", os.getcwd())]

from convdiag.cli.main import main  # noqa: E402

if __name__ == "__main__":
    main()
