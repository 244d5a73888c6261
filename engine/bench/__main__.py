"""python -m engine.bench"""

import sys

from engine.bench.cli import main
from engine.cli import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(main))
