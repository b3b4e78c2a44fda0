"""`python -m host.cli`: the same as the `nimbus` command."""

import sys

from host.cli.entry import main

sys.exit(main())
