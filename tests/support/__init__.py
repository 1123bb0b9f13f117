"""Plumbing shared by every test suite: fixture paths and small helpers (`common`), a throw-away PKI
(`pki`), the exporter as a child process (`exporter_process`) and network-namespace/OpenVPN basics
(`netns`). Suites import from here, so each of these is written once."""
