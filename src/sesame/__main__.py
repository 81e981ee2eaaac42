import sys

from sesame.cli import main

sys.exit(main())
