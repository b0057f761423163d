import sys

from fif.cli.main import main

sys.exit(main())
