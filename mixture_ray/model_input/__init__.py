"""Ready tile pixels for the model stages (embed, classify): plan, read, decode or read from slides."""
