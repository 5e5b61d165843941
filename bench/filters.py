"""The filters suite (fastconv.ndimage / fastconv.signal against SciPy and OpenCV): a
runnable shim over fastconv.benchmark.filters, which also backs `fastconv bench --suite
filters`.

Run: ``python bench/filters.py`` (4096 x 4096 float32, 2 threads), ``--cpu --repeat 5``
(one thread, CPU time), ``--size 1024 --repeat 3``, ``--calibrate`` (the cost model's
constants, see docs/filtering.md).
"""

import os
import sys

if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from fastconv.benchmark.filters import main

    sys.exit(main())
