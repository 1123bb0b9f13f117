"""Views: render a ServerState as Prometheus text, JSON or HTML. No parsing, no I/O."""
