"""Releasing TensorFlow's start-up-only library pages: RSS goes down and the models keep working."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from digitrec.service import memory

MAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/bin/python3.11
55d0c0001000-55d0c0002000 r-xp 00001000 08:01 123 /usr/bin/python3.11
55d0c0002000-55d0c0003000 rw-p 00002000 08:01 123 /usr/bin/python3.11
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
7f0000100000-7f0000200000 r--p 00000000 00:00 0 [vvar]
7f0000200000-7f0000300000 r--s 00000000 08:01 456 /tmp/file with spaces.so
"""


def test_only_read_only_file_mappings_are_chosen():
    ranges = memory.read_only_file_mappings(MAPS)
    assert ranges == [
        (0x55D0C0000000, 0x55D0C0001000),
        (0x55D0C0001000, 0x55D0C0002000),
        (0x7F0000200000, 0x7F0000300000),
    ]


SMAPS = """\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 123 /usr/lib/libtensorflow_framework.so.2
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
55d0c0001000-55d0c0002000 r--p 00001000 08:01 123 /usr/lib/libtensorflow_framework.so.2
Size:                  4 kB
Anonymous:             4 kB
55d0c0002000-55d0c0003000 rw-p 00002000 08:01 123 /usr/lib/libtensorflow_framework.so.2
Anonymous:             0 kB
7f0000000000-7f0000100000 r--p 00000000 00:00 0
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 08:01 456 /tmp/file with spaces.so
Anonymous:             0 kB
"""


def test_pages_are_dropped_only_from_read_only_file_mappings_without_private_pages():
    # the second mapping holds a copy-on-write page (relocations made read-only): dropping it would
    # bring back the file's unrelocated bytes, so it is left alone
    assert memory.clean_read_only_file_mappings(SMAPS) == [
        (0x55D0C0000000, 0x55D0C0001000),
        (0x7F0000200000, 0x7F0000300000),
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_PAGEOUT is Linux-only")
def test_release_lowers_rss_and_predictions_stay_the_same(digits_model, mnist_test):
    images, _ = mnist_test
    x = images[:64].reshape(-1, 784).astype(np.float32) / 255.0
    before_proba = digits_model.predict_proba(x)
    before = memory.rss_mb()
    accepted = memory.release_library_pages()
    after = memory.rss_mb()
    assert accepted > 0
    # TensorFlow's libraries alone hold well over 100 MB of start-up pages in RSS.
    assert after["file"] < before["file"] - 100, (before, after)
    np.testing.assert_array_equal(digits_model.predict_proba(x), before_proba)
