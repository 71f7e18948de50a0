"""Built-in backbones, registered through the ``register_backbones`` hook like any plugin's."""
