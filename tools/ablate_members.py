"""`python tools/ablate_members.py ...` is `kk ablate ...` (the code: kaggle_kit/commands/ablate_members.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("ablate")
