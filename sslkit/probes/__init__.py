"""Built-in probes, registered through the ``register_probes`` hook like any plugin's."""
