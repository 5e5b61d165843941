"""Teaching demos run by ``fastconv demo``: each module computes and plots; the command line
lives in ``fastconv.cli``. ``init_lesson``: the weight-initialisation lesson; ``capsnet``:
a small CapsNet against a CNN on shifted and rotated digits."""
