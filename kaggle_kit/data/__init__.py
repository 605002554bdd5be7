"""Competition data: raw parsing, RLE, volumes, cache, folds and the synthetic generator."""
from kaggle_kit.data.raw import CLASSES, DataError, discover_split, load_labels, parse_id, parse_slice_filename  # noqa: F401
from kaggle_kit.data.rle import rle_decode, rle_encode  # noqa: F401
