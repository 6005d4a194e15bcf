"""Repository root: anchors pytest's rootdir; benchmarks are scripts, not tests."""

collect_ignore = ["bench"]
