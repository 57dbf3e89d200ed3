"""Built-in tasks, one module each; every non-abstract Task subclass here is registered by name."""
