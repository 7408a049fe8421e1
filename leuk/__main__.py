import sys

from leuk.cli import main

sys.exit(main())
