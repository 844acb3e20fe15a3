import sys

from stepwiser.cli import main

sys.exit(main())
