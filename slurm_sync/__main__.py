import sys

from slurm_sync.cli import main

sys.exit(main())
