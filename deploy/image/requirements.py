"""Print recognizer's dependencies from pyproject.toml, one a line, for `pip install -r`.

The image installs them before recognizer itself, so that a change to the code does not
reinstall them.
"""

import sys
import tomllib

with open(sys.argv[1], "rb") as file:
    print(*tomllib.load(file)["project"]["dependencies"], sep="\n")
