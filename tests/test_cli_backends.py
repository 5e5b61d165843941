"""`fastconv backends`: every kernel of the contract, the engines that run it, and the public
functions it serves (so the adaptive max pools' gradient is visibly covered)."""

from fastconv import cli
from fastconv.backends._registry import support_matrix
from fastconv.cli.backends import SERVES


def test_every_kernel_is_listed_with_what_it_serves(capsys):
    assert cli.main(["backends"]) == 0
    out = capsys.readouterr().out
    assert set(SERVES) == set(support_matrix())
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for kernel, serves in SERVES.items():
        assert kernel in rows and rows[kernel].rstrip().endswith(serves)
    assert "adaptive_max_pool*_input" in rows["max_pool2d_backward"]
