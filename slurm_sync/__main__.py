import sys

from slurm_sync.cli.main import main

sys.exit(main())
