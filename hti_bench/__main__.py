import sys

from hti_bench.cli import main

sys.exit(main())
