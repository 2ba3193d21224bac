"""Running: the runner, its events and progress, and the backends that launch attempts."""
