"""The project's own speedrun trainer (train_gpt.py, self-contained) and its data tools (data.py)."""
