"""Prometheus exporter for OpenVPN servers."""

# Fixed here rather than read from the package metadata: importlib.metadata (with email, zipfile and csv
# behind it) costs every sidecar about 0.8 MB of RSS for one string. tests/unit/test_cli.py checks that
# it equals pyproject.toml's version.
__version__ = "1.0.0"
