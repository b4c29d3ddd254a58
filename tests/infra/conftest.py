"""Set before anything imports aws_cdk: jsii prints an end-of-life banner on Node 20."""

from __future__ import annotations

import os

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
