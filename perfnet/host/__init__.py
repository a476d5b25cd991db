"""Access to the host: the only code that enters namespaces and runs ``ip`` for topologies."""
