"""Sources: where status text comes from (files, the management interface), each yielding readings."""
