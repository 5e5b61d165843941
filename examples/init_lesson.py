"""The weight-initialisation lesson, as a script (the same as `fastconv demo init`).

    python examples/init_lesson.py                 # 200 SGD steps per init, about 15 s
    python examples/init_lesson.py --plot init.png --steps 500

Trains one small CNN (conv-ReLU-pool x2, linear) with fastconv's layers, backward passes and
SGD on generated 16x16 images of oriented bars, from zeros, a constant, N(1, 0.1), Xavier and
He initialisation, and prints the loss curves, the final held-out accuracy, whether the
filters of each layer stayed identical, and the activation variance through a 10-layer
ReLU stack at initialisation. Progress goes to stderr. See docs/init_lesson.md.
"""

import sys

from fastconv.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", "init", *sys.argv[1:]]))
