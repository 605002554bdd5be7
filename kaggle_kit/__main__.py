"""``python -m kaggle_kit COMMAND ...`` is ``kk COMMAND ...`` (what the main job runs its stages with)."""
from kaggle_kit.commands import entry

entry()
