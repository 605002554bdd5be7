"""`python tools/make_synthetic.py ...` is `kk synth ...` (the code: kaggle_kit/commands/make_synthetic.py)."""
from kaggle_kit.commands import shim

if __name__ == "__main__":
    shim("synth")
