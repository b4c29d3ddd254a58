"""Instruments are dictionary keys everywhere (positions, marks, watches): equal means same hash,
in this process and after travelling from another (a worker's results reach the runner pickled)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from datetime import date

from alluse.domain.instruments import OptionContract, OptionRight

PUT = OptionContract("TSLA", date(2026, 1, 9), 25_000, OptionRight.PUT)


def test_equal_contracts_are_one_key() -> None:
    twin = OptionContract("TSLA", date(2026, 1, 9), 25_000, OptionRight.PUT)
    other = OptionContract("TSLA", date(2026, 1, 9), 25_500, OptionRight.PUT)
    assert twin == PUT and hash(twin) == hash(PUT) and {PUT: 1}[twin] == 1
    assert other != PUT and other not in {PUT: 1}


def test_a_contract_pickled_in_another_process_is_the_same_key_here() -> None:
    """String hashes differ between processes: a hash kept on the object must not travel with it."""
    code = (
        "import pickle, sys; from datetime import date; "
        "from alluse.domain.instruments import OptionContract, OptionRight; "
        "c = OptionContract('TSLA', date(2026, 1, 9), 25_000, OptionRight.PUT); hash(c); "
        "sys.stdout.write(pickle.dumps(c).hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    travelled = pickle.loads(bytes.fromhex(out))  # our own child's output
    assert travelled == PUT and hash(travelled) == hash(PUT) and {PUT: 1}[travelled] == 1
