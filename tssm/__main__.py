import signal
import sys

from .errors import exit_before_start

# Ctrl-C from the first line on is one line and exit 4: the handler goes in before the CLI's
# imports (json, yaml, torch), which would otherwise surface a KeyboardInterrupt's traceback.
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, exit_before_start)

from .cli import main  # noqa: E402

sys.exit(main())
