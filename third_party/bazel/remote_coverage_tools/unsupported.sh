#!/bin/sh
echo "bazel coverage is not supported in this workspace (offline stand-in for remote_coverage_tools)." >&2
exit 1
