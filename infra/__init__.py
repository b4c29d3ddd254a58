"""AWS CDK app for ALL-USE: one stack, one construct per concern (see docs / ARCHITECTURE.md §2, §3)."""
