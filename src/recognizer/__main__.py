"""`python -m recognizer` is the `recognizer` command."""

import sys

from recognizer.cli import main

sys.exit(main())
