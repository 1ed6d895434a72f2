"""`python -m recognizer` is the `recognizer` command."""

import sys

from recognizer.cli.main import main

sys.exit(main())
