import sys

from experiments.ppssl.cli import main

sys.exit(main())
