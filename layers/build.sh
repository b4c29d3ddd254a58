#!/usr/bin/env bash
# Builds the Lambda layer: the alluse package plus the runtime libraries Lambda does not provide,
# into layers/build/python (the layout Lambda layers use). Pins come from requirements.txt, so the
# layer runs exactly what the tests ran. Target: Lambda python3.11 on x86_64 (this machine's platform).
set -euo pipefail
cd "$(dirname "$0")/.."
out=layers/build
rm -rf "$out" && mkdir -p "$out/python"
# boto3 is in the Lambda runtime; moto, typer, rich, ib-async, scipy, pandas and exchange-calendars serve the
# CLI, the simulator, tests and the Fargate gateway. numpy is the domain's own (market types, tick grid).
grep -E '^(pydantic|pynamodb|aws-lambda-powertools|aws-xray-sdk|numpy)==' requirements.txt > "$out/requirements.txt"
if [ -x .venv/bin/uv ]; then
  .venv/bin/uv pip install -q --target "$out/python" --python .venv/bin/python -r "$out/requirements.txt" --no-deps ./shared
  .venv/bin/uv pip install -q --target "$out/python" --python .venv/bin/python -r "$out/requirements.txt"
else
  python3 -m pip install -q --target "$out/python" -r "$out/requirements.txt" ./shared --no-deps
  python3 -m pip install -q --target "$out/python" -r "$out/requirements.txt"
fi
rm -rf shared/build  # setuptools leaves its build tree behind
echo "layer built in $out/python ($(du -sh "$out/python" | cut -f1))"
