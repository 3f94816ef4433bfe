"""``python -m minidnn.cli``."""
import sys

from . import main

sys.exit(main())
