import sys

from .errors import guard_start_up

guard_start_up()  # before the CLI's imports (json, yaml, torch): Ctrl-C there is one line, exit 4

from .cli import main  # noqa: E402

sys.exit(main())
