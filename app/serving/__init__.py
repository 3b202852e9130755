"""The serving core: repository (source), loader, runtime, batching, registry (manager)."""
