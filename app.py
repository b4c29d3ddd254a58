#!/usr/bin/env python3
"""CDK entry point (`cdk synth` runs `python3 app.py`, see cdk.json); also runs alone: `python app.py`.

Synthesizes offline: the stack is environment-agnostic, so no AWS account or context lookup is needed.
Writes to ./cdk.out, or to $CDK_OUTDIR when set (the CDK CLI sets it).
"""

from __future__ import annotations

import os

# jsii prints an end-of-life banner on Node 20; silence it (Node 22+ does not need this).
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.stack import build_app  # after the environment variable above

if __name__ == "__main__":
    app, _stack, _checks = build_app()
    app.synth()
