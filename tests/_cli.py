"""Helpers for tests that run the command line: a clean failure is one message, no traceback."""

import pytest

from fastconv import cli


def clean_failure(capsys, code, *words):
    """The command failed with a one-line message naming ``words``, no traceback."""
    err = capsys.readouterr().err
    assert code != 0
    assert "Traceback" not in err
    for w in words:
        assert w in err, err
    return err


def argparse_failure(capsys, argv, *words):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    return clean_failure(capsys, 2, *words)
