import sys

from digitrec.cli import main

sys.exit(main())
