"""``python -m gpuimages``: the same commands as ``gpuimages``."""

import sys

from gpuimages.cli import main

sys.exit(main())
