def load() -> None:
    import trainable.ray_entry  # noqa: F401
