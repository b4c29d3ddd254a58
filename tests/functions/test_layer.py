"""The Lambda layer holds everything the handler imports: built for real, imported with nothing else."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_handler_imports_from_the_layer_alone() -> None:
    subprocess.run(["bash", str(ROOT / "layers" / "build.sh")], check=True, capture_output=True, timeout=300)
    layer = ROOT / "layers" / "build" / "python"
    probe = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]];"
        "import functions.accounts_api.handler as h; assert callable(h.lambda_handler)"
    )
    # -S: no site-packages, so only the standard library, the layer and the function code are importable.
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(layer), str(ROOT)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
